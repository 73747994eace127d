import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { scratchDir } from '@haven/testing';

const REPO = join(__dirname, '../../..');

interface DemoOutcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `npm run demo -- --exit` as an operator runs it, in a scratch data folder, on its embedded
 * defaults: none of the test harness's catalog, bus or Haven settings reach it. Small disks keep
 * the tour short.
 */
function runDemo(dataDir: string): Promise<DemoOutcome> {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env))
    if (!/^(HAVEN_|DATABASE_URL|NATS_URL)/.test(name)) env[name] = value;
  Object.assign(env, {
    HAVEN_DATA: dataDir,
    HAVEN_PORT: '0',
    HAVEN_HOST: '127.0.0.1',
    HAVEN_DEMO_DISK_MIB: '16',
    LOG_LEVEL: 'error',
  });
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/run.js', 'apps/haven/src/demo.ts', '--exit'], {
      cwd: REPO,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (part: Buffer) => (stdout += part.toString()));
    child.stderr.on('data', (part: Buffer) => (stderr += part.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('npm run demo -- --exit', () => {
  const folders: { cleanup: () => Promise<void> }[] = [];
  const scratch = async (): Promise<string> => {
    const folder = await scratchDir('haven-demo-');
    folders.push(folder);
    return folder.path;
  };

  afterAll(async () => {
    for (const folder of folders) await folder.cleanup();
  });

  it('tours backups and a restore, reports the restored VM identical, and exits 0', async () => {
    const outcome = await runDemo(await scratch());
    expect(outcome.stderr).not.toContain('FAILED');
    expect(outcome.code).toBe(0);
    expect(outcome.stdout).toMatch(/First backup: run \S+ success/);
    expect(outcome.stdout).toMatch(/Second backup: run \S+ success/);
    expect(outcome.stdout).toContain('are byte-identical to the VM at the second backup');
    expect(outcome.stdout).toContain('Stopping (--exit).');
  }, 240_000);

  it('exits 1 naming the step when a backup fails (a remote folder holding no valid repository)', async () => {
    const data = await scratch();
    // The demo's remote folder already holds something that is not a Haven repository.
    await mkdir(join(data, 'remote'), { recursive: true });
    await writeFile(join(data, 'remote', 'repository.json'), 'not a repository');
    const outcome = await runDemo(data);
    expect(outcome.code).toBe(1);
    expect(outcome.stderr).toContain('Demo tour FAILED: First backup ended failure');
    expect(outcome.stdout).not.toContain('byte-identical');
    expect(outcome.stdout).not.toContain('Haven demo is running');
  }, 240_000);
});
