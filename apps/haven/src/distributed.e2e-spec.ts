import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createTestDatabase,
  describeIntegration,
  freeLoopbackPort,
  scratchDir,
  uniqueName,
} from '@haven/testing';
import { gatewayScenario } from './gateway.scenario';

const ROOT = resolve(__dirname, '../../..');
const ROLES = ['catalog', 'gateway', 'scheduler', 'transfer', 'replication', 'mirror'] as const;

interface ServiceProcess {
  role: string;
  port: number;
  child: ChildProcess;
  output: string[];
}

async function waitHealthy(service: ServiceProcess, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    if (service.child.exitCode !== null)
      throw new Error(
        `${service.role} exited with ${service.child.exitCode}:\n${service.output.join('').slice(-2000)}`,
      );
    const ok = await fetch(`http://127.0.0.1:${service.port}/health`)
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) return;
    if (Date.now() > deadline)
      throw new Error(
        `${service.role} not healthy after ${deadlineMs} ms:\n${service.output.join('').slice(-2000)}`,
      );
    await sleep(250);
  }
}

describeIntegration('six services as separate processes over NATS and Postgres', ['postgres', 'nats'], () => {
  const services: ServiceProcess[] = [];
  let database: { url: string; drop: () => Promise<void> };
  let dataDir: { path: string; cleanup: () => Promise<void> };
  let remoteDir: { path: string; cleanup: () => Promise<void> };
  let baseUrl = '';

  beforeAll(async () => {
    database = await createTestDatabase('haven_e2e');
    dataDir = await scratchDir('haven-dist-data-');
    remoteDir = await scratchDir('haven-dist-remote-');
    const common = {
      ...process.env,
      DATABASE_URL: database.url,
      NATS_URL: process.env['HAVEN_TEST_NATS_URL'] ?? 'nats://127.0.0.1:4222',
      HAVEN_NATS_PREFIX: uniqueName('haven_e2e'),
      HAVEN_MASTER_KEY: randomBytes(32).toString('hex'),
      HAVEN_HOST: '127.0.0.1',
      HAVEN_PLUGINS: '@haven/remote-local,./examples/plugins/example-job',
      LOG_LEVEL: 'warn',
    };
    // The catalog first: it applies migrations and creates the admin key; the others wait for it.
    for (const role of ROLES) {
      const port = await freeLoopbackPort();
      const child = spawn(
        process.execPath,
        [join(ROOT, 'bin/run.js'), join(ROOT, `apps/${role}/src/main.ts`)],
        {
          cwd: ROOT,
          env: {
            ...common,
            HAVEN_PORT: String(port),
            HAVEN_DATA: join(dataDir.path, role),
            HAVEN_INSTANCE: `${role}-e2e`,
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      const output: string[] = [];
      child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
      const service = { role, port, child, output };
      services.push(service);
      if (role === 'catalog') await waitHealthy(service, 90_000);
    }
    await Promise.all(services.map((s) => waitHealthy(s, 120_000)));
    baseUrl = `http://127.0.0.1:${services.find((s) => s.role === 'gateway')?.port}`;
  }, 240_000);

  afterAll(async () => {
    if (process.env['HAVEN_E2E_DUMP'])
      for (const service of services)
        process.stdout.write(`--- ${service.role}\n${service.output.join('')}\n`);
    for (const service of services) if (service.child.exitCode === null) service.child.kill('SIGKILL');
    await database.drop();
    await dataDir.cleanup();
    await remoteDir.cleanup();
  });

  it('runs every role in its own process, each reporting its own health and metrics', async () => {
    for (const service of services) {
      const health = (await (await fetch(`http://127.0.0.1:${service.port}/health`)).json()) as {
        roles: string[];
        checks: { bus: { ok: boolean } };
      };
      expect(health.roles).toEqual([service.role]);
      expect(health.checks.bus.ok).toBe(true);
      expect(await (await fetch(`http://127.0.0.1:${service.port}/metrics`)).text()).toContain(
        `service="${service.role}"`,
      );
    }
    // Only the gateway serves the API.
    expect(
      (await fetch(`http://127.0.0.1:${services.find((s) => s.role === 'scheduler')?.port}/api/v1/pools`))
        .status,
    ).toBe(404);
  });

  // The admin key is written by the catalog process, into its own data folder.
  gatewayScenario(() => ({ baseUrl, dataDir: join(dataDir.path, 'catalog'), remoteFolder: remoteDir.path }));

  it('shuts every process down cleanly on SIGTERM', async () => {
    for (const service of services) {
      service.child.kill('SIGTERM');
      const [code] = (await once(service.child, 'exit')) as [number | null];
      expect({ role: service.role, code }).toEqual({ role: service.role, code: 0 });
    }
  }, 60_000);
});
