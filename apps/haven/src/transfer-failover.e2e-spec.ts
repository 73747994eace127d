import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { loadConfig } from '@haven/config';
import { plugin as localRemote } from '@haven/remote-local';
import { openRepository } from '@haven/repository';
import { CatalogModule } from '@haven/service-catalog';
import { startHavenProcess } from '@haven/service-core';
import { GatewayModule } from '@haven/service-gateway';
import { SchedulerModule } from '@haven/service-scheduler';
import {
  createTestDatabase,
  describeIntegration,
  freeLoopbackPort,
  scratchDir,
  uniqueName,
} from '@haven/testing';
import { startXapiSimulator, type XapiSimulator } from '@haven/xapi-sim';

const ROOT = resolve(__dirname, '../../..');
const MiB = 1024 * 1024;
const PASSPHRASE = 'failover passphrase';

interface Worker {
  name: string;
  port: number;
  child: ChildProcess;
  output: string[];
}

interface TaskRow {
  id: string;
  status: string;
  worker: string | null;
  attempts: number;
  progress: { bytesDone?: number };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, limitMs = 60_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await sleep(100);
  }
}

/**
 * Two transfer workers as separate processes on real NATS JetStream and Postgres; the one running
 * a backup is SIGKILLed mid-transfer. The other takes the task over once its ack wait passes.
 */
describeIntegration('two transfer workers, one killed mid-transfer', ['postgres', 'nats'], () => {
  let database: { url: string; drop: () => Promise<void> };
  const dirs: { path: string; cleanup: () => Promise<void> }[] = [];
  let simulator: XapiSimulator;
  let app: INestApplication;
  let baseUrl = '';
  let admin = '';
  const workers: Worker[] = [];
  const api = () => request(baseUrl);
  const auth = (req: request.Test) => req.set('authorization', `Bearer ${admin}`);

  beforeAll(async () => {
    database = await createTestDatabase('haven_failover');
    for (const prefix of ['haven-fo-data-', 'haven-fo-remote-', 'haven-fo-sim-'])
      dirs.push(await scratchDir(prefix));
    simulator = await startXapiSimulator({
      stateDir: dirs[2].path,
      vms: 1,
      diskSize: 32 * MiB,
      seed: 'failover',
      user: 'root',
      password: 'pw',
    });
    const env = {
      DATABASE_URL: database.url,
      NATS_URL: process.env['HAVEN_TEST_NATS_URL'] ?? 'nats://127.0.0.1:4222',
      HAVEN_NATS_PREFIX: uniqueName('haven_fo'),
      HAVEN_MASTER_KEY: randomBytes(32).toString('hex'),
      HAVEN_HOST: '127.0.0.1',
      HAVEN_PLUGINS: '@haven/remote-local,@haven/job-backup-incremental',
      // A dead worker's task goes to the other after 3 s without a sign of life.
      HAVEN_TASK_ACK_WAIT_MS: '3000',
      LOG_LEVEL: 'warn',
    };
    // Catalog (migrations, admin key), gateway and scheduler in this process.
    app = await startHavenProcess({
      roles: ['catalog', 'gateway', 'scheduler'],
      modules: [CatalogModule, GatewayModule, SchedulerModule],
      config: loadConfig({ ...env, HAVEN_PORT: '0', HAVEN_DATA: dirs[0].path, LOG_LEVEL: 'error' }),
    });
    baseUrl = await app.getUrl();
    admin = readFileSync(join(dirs[0].path, 'admin-key'), 'utf8').trim();
    for (const name of ['transfer-a', 'transfer-b']) {
      const port = await freeLoopbackPort();
      const child = spawn(
        process.execPath,
        [join(ROOT, 'bin/run.js'), join(ROOT, 'apps/transfer/src/main.ts')],
        {
          cwd: ROOT,
          env: {
            ...process.env,
            ...env,
            HAVEN_PORT: String(port),
            HAVEN_DATA: join(dirs[0].path, name),
            HAVEN_INSTANCE: name,
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      const output: string[] = [];
      child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
      workers.push({ name, port, child, output });
    }
    for (const worker of workers)
      await until(
        `${worker.name} healthy`,
        async () => {
          if (worker.child.exitCode !== null)
            throw new Error(`${worker.name} exited: ${worker.output.join('').slice(-2000)}`);
          const ok = await fetch(`http://127.0.0.1:${worker.port}/health`)
            .then((r) => r.ok)
            .catch(() => false);
          return ok ? true : undefined;
        },
        90_000,
      );
  }, 150_000);

  afterAll(async () => {
    if (process.env['HAVEN_E2E_DUMP'])
      for (const worker of workers) process.stdout.write(`--- ${worker.name}\n${worker.output.join('')}\n`);
    for (const worker of workers)
      if (worker.child.exitCode === null && worker.child.signalCode === null) {
        worker.child.kill('SIGTERM');
        await once(worker.child, 'exit');
      }
    await app.close();
    await simulator.close();
    await database.drop();
    for (const dir of dirs) await dir.cleanup();
  }, 60_000);

  it('completes the run on the surviving worker: one restore point per remote, no orphaned snapshot, restores byte-identical', async () => {
    const pool = await auth(api().post('/api/v1/pools'))
      .send({ name: 'sim', url: simulator.url, username: 'root', password: 'pw' })
      .expect(201);
    const remoteRoot = dirs[1].path;
    const remote = await auth(api().post('/api/v1/remotes'))
      .send({
        name: 'nas',
        type: 'local',
        settings: { path: remoteRoot },
        encryption: { passphrase: PASSPHRASE },
      })
      .expect(201);
    const vm = simulator.listVms().find((v) => !v.isTemplate && !v.isSnapshot);
    if (!vm) throw new Error('the simulator has no VM');
    const job = await auth(api().post('/api/v1/jobs'))
      .send({
        name: 'failover',
        type: 'backup.incremental',
        selection: { poolId: pool.body.id, mode: 'explicit', vms: [vm.uuid] },
        remoteIds: [remote.body.id],
        settings: { compression: 'none' },
      })
      .expect(201);
    const diskHash = (await simulator.diskHash(vm.uuid)).sha256;

    // A slow pool keeps the export in flight long enough to kill its worker in the middle.
    simulator.setFaults({ bandwidthBytesPerSecond: 2 * MiB });
    const started = await auth(api().post(`/api/v1/jobs/${job.body.id}/run`))
      .send({})
      .expect(202);
    const runId = started.body.runId as string;
    const task = async () =>
      ((await auth(api().get(`/api/v1/runs/${runId}`)).expect(200)).body.tasks as TaskRow[]).at(0);
    const inFlight = await until('the export in flight', async () => {
      const row = await task();
      return row?.status === 'running' && row.worker !== null && (row.progress.bytesDone ?? 0) > 0
        ? row
        : undefined;
    });
    const victim = workers.find((w) => w.name === inFlight.worker);
    const survivor = workers.find((w) => w.name !== inFlight.worker);
    if (!victim || !survivor) throw new Error(`task runs on unknown worker ${inFlight.worker}`);
    victim.child.kill('SIGKILL');
    await once(victim.child, 'exit');
    simulator.setFaults({ bandwidthBytesPerSecond: null });

    const ended = await until(
      'the run to end',
      async () => {
        const run = (await auth(api().get(`/api/v1/runs/${runId}`)).expect(200)).body as {
          status: string;
          error: string | null;
        };
        return run.status === 'running' ? undefined : run;
      },
      60_000,
    );
    expect(ended).toMatchObject({ status: 'success', error: null });
    expect(await task()).toMatchObject({ status: 'success', worker: survivor.name, attempts: 2 });

    // The run's log tells the story: attempt 1 on the victim, attempt 2 on the survivor.
    const logs = await until('both attempts logged', async () => {
      const body = (await auth(api().get(`/api/v1/runs/${runId}/logs`)).expect(200)).body as {
        items: { message: string }[];
      };
      const messages = body.items.map((l) => l.message);
      return messages.some((m) => m.startsWith('task finished')) ? messages : undefined;
    });
    expect(logs).toContain(`attempt 1 of 3 started on worker ${victim.name}`);
    expect(logs).toContain(
      `worker ${victim.name} stopped answering during attempt 1; worker ${survivor.name} takes the task over`,
    );
    expect(logs).toContain(`attempt 2 of 3 started on worker ${survivor.name}`);

    // Exactly one restore point, in the catalog and on the remote.
    const points = await auth(api().get(`/api/v1/restore-points?jobId=${job.body.id}`)).expect(200);
    expect(points.body.items).toHaveLength(1);
    const store = await localRemote.create({ path: remoteRoot }, { name: 'check' });
    try {
      const repository = await openRepository(store, { key: PASSPHRASE });
      const onRemote = await repository.listRestorePoints();
      expect(onRemote.map((p) => p.manifest.vm.uuid)).toEqual([vm.uuid]);
    } finally {
      await store.close();
    }

    // No orphaned snapshot: only the base kept for the next incremental.
    expect(simulator.listVms().filter((v) => v.isSnapshot)).toHaveLength(1);

    // And the restore point is the disk as it was.
    const pointId = points.body.items[0].id as string;
    const disks = await auth(api().get(`/api/v1/restore-points/${pointId}/disks`)).expect(200);
    const raw = await auth(
      api().get(`/api/v1/restore-points/${pointId}/disks/${disks.body.items[0].key}?format=raw`),
    )
      .buffer(true)
      .parse((res, done) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => done(null, Buffer.concat(chunks)));
      })
      .expect(200);
    expect(
      createHash('sha256')
        .update(raw.body as Buffer)
        .digest('hex'),
    ).toBe(diskHash);
  }, 120_000);
});
