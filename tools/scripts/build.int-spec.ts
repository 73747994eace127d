import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ChildProcessServer, freeLoopbackPort, scratchDir, uniqueName } from '@haven/testing';

const run = promisify(execFile);
const root = join(__dirname, '..', '..');
const buildScript = join(__dirname, 'build.mjs');

describe('production build (npm run build) and the all-in-one started from it', () => {
  // Inside the workspace (tmp/ is ignored by git) so the build's third-party requires resolve.
  const out = join(root, 'tmp', uniqueName('build-spec'));
  let buildOutput = '';

  beforeAll(async () => {
    const { stdout } = await run(process.execPath, [buildScript, '--out', out], { cwd: root });
    buildOutput = stdout;
  }, 120_000);

  afterAll(async () => {
    await rm(out, { recursive: true, force: true });
  });

  it('compiles every role and library, leaves the tests out and copies runtime assets', () => {
    expect(buildOutput).toMatch(/\d+ files compiled/);
    for (const role of ['haven', 'gateway', 'catalog', 'scheduler', 'transfer', 'replication', 'mirror'])
      expect(existsSync(join(out, 'apps', role, 'src', 'main.js'))).toBe(true);
    expect(existsSync(join(out, 'tools', 'xapi-sim', 'src', 'cli.js'))).toBe(true);
    expect(existsSync(join(out, 'tools', 'xapi-sim', 'src', 'testing', 'xen-api-client.worker.mjs'))).toBe(
      true,
    );
    expect(existsSync(join(out, 'apps', 'haven', 'src', 'embedded.e2e-spec.js'))).toBe(false);
    expect(existsSync(join(out, 'libs', 'config', 'src', 'haven.config.spec.js'))).toBe(false);
    // Static @haven/* imports point at the compiled files; no alias is left for a loader to map.
    const app = readFileSync(join(out, 'apps', 'haven', 'src', 'haven.app.js'), 'utf8');
    expect(app).toContain('require("../../../libs/services/core/src")');
    expect(app).not.toMatch(/require\("@haven\//);
  });

  it('starts the all-in-one from the build: /health 200, built-in and by-path plugins loaded', async () => {
    const data = await scratchDir('haven-build-spec-data-');
    const port = await freeLoopbackPort();
    // `env` execs node with the settings, so the server's pid is node's.
    const server = new ChildProcessServer('haven (built)', port, '/usr/bin/env', [
      `HAVEN_DATA=${data.path}`,
      `HAVEN_PORT=${port}`,
      'HAVEN_HOST=127.0.0.1',
      'LOG_LEVEL=error',
      'HAVEN_PLUGINS=@haven/remote-local,@haven/remote-s3,@haven/job-backup-incremental,./examples/plugins/example-job',
      process.execPath,
      join(out, 'apps', 'haven', 'src', 'main.js'),
    ]);
    try {
      await server.start(60_000);
      const base = `http://127.0.0.1:${port}`;
      const health = await fetch(`${base}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok' });

      const admin = readFileSync(join(data.path, 'admin-key'), 'utf8').trim();
      const plugins = await fetch(`${base}/api/v1/plugins`, {
        headers: { authorization: `Bearer ${admin}` },
      });
      expect(plugins.status).toBe(200);
      const { items } = (await plugins.json()) as { items: { kind: string; type: string }[] };
      expect(items.map((p) => `${p.kind}:${p.type}`).sort()).toEqual(
        ['job:backup.incremental', 'job:example.echo', 'remote:local', 'remote:s3'].sort(),
      );
    } finally {
      await server.stop();
      await data.cleanup();
    }
  }, 90_000);

  it('refuses an output folder outside the workspace, naming it', async () => {
    const elsewhere = join('/tmp', uniqueName('haven-build-elsewhere'));
    await expect(
      run(process.execPath, [buildScript, '--out', elsewhere], { cwd: root }),
    ).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining(`--out must be a folder inside the workspace`),
    });
    expect(existsSync(elsewhere)).toBe(false);
  });
});
