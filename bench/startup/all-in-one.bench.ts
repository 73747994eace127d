/**
 * Start-up: time from launching the all-in-one process on embedded defaults (PGlite catalog,
 * in-process bus) to its first healthy `/health`, on a fresh data folder (migrations, first admin
 * key) and again on the same folder, as a ratio to starting a bare NestJS HTTP app with one route
 * through the same runner in the same run. Target: under 10 s.
 *
 *   node bin/run.js bench/startup/all-in-one.bench.ts [--rounds 3]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { freeLoopbackPort } from '@haven/testing';

const ROOT = resolve(__dirname, '../..');
const rounds = Number(process.argv[process.argv.indexOf('--rounds') + 1]) || 3;

async function timeToHealthy(entry: string, env: NodeJS.ProcessEnv, path: string): Promise<number> {
  const port = await freeLoopbackPort();
  const started = performance.now();
  const child = spawn(process.execPath, [join(ROOT, 'bin/run.js'), entry], {
    cwd: ROOT,
    env: {
      ...process.env,
      ...env,
      HAVEN_PORT: String(port),
      PORT: String(port),
      HAVEN_HOST: '127.0.0.1',
      LOG_LEVEL: 'error',
    },
    stdio: 'ignore',
  });
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${entry} exited with ${child.exitCode}`);
      const ok = await fetch(`http://127.0.0.1:${port}${path}`)
        .then((r) => r.ok)
        .catch(() => false);
      if (ok) return performance.now() - started;
      await sleep(20);
    }
  } finally {
    child.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), 'haven-startup-'));
  const bare = join(ROOT, 'bench/startup/bare-nest.app.ts');
  const rows: string[] = [];
  try {
    for (let round = 1; round <= rounds; round++) {
      const data = join(scratch, `data-${round}`);
      const baseline = await timeToHealthy(bare, {}, '/health');
      const first = await timeToHealthy(
        join(ROOT, 'apps/haven/src/main.ts'),
        { HAVEN_DATA: data },
        '/health',
      );
      const again = await timeToHealthy(
        join(ROOT, 'apps/haven/src/main.ts'),
        { HAVEN_DATA: data },
        '/health',
      );
      rows.push(
        `| ${round} | ${(baseline / 1000).toFixed(2)} | ${(first / 1000).toFixed(2)} (${(first / baseline).toFixed(1)}x) | ${(again / 1000).toFixed(2)} (${(again / baseline).toFixed(1)}x) |`,
      );
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  process.stdout.write(
    [
      '\nAll-in-one start-up to first healthy /health (embedded defaults), seconds',
      '| round | bare NestJS app (baseline) | Haven, fresh data folder | Haven, existing data folder |',
      '| --- | --- | --- | --- |',
      ...rows,
      '',
    ].join('\n'),
  );
}

void main();
