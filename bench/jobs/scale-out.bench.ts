/**
 * Scale-out of backup.incremental: one job over 4 VMs (zstd, encrypted remote, vmConcurrency 4),
 * run by the services as separate processes over NATS JetStream and Postgres (catalog, gateway,
 * scheduler, transfer), first with one transfer worker, then with a second one started beside it
 * (a new job and remote, so both runs are full backups of the same data). Each worker takes up to
 * 2 tasks at once (HAVEN_WORKER_CONCURRENCY, its default): one worker backs up 2 VMs at a time,
 * two workers all 4 (a worker allowed 4 would take every task itself). The baseline is the one-worker run of the same script; the figure is its time over the
 * two-worker run's. The simulator runs as its own process; its first VM has two disks.
 *
 *   node bin/run.js bench/jobs/scale-out.bench.ts            # 4 VMs, 512 MiB disks
 *   node bin/run.js bench/jobs/scale-out.bench.ts --full     # 4 VMs, 2 GiB disks
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createTestDatabase,
  freeLoopbackPort,
  scratchDir,
  uniqueName,
  XapiSimTestServer,
} from '@haven/testing';

const ROOT = resolve(__dirname, '../..');
const full = process.argv.includes('--full');
const MiB = 1024 * 1024;
const diskSize = full ? 2048 * MiB : 512 * MiB;

interface Service {
  role: string;
  port: number;
  child: ChildProcess;
  output: string[];
}

async function waitHealthy(service: Service, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    if (service.child.exitCode !== null)
      throw new Error(
        `${service.role} exited with ${service.child.exitCode}:\n${service.output.join('').slice(-2000)}`,
      );
    const ok = await fetch(`http://127.0.0.1:${service.port}/health`)
      .then((response) => response.ok)
      .catch(() => false);
    if (ok) return;
    if (Date.now() > deadline)
      throw new Error(
        `${service.role} not healthy after ${deadlineMs} ms:\n${service.output.join('').slice(-2000)}`,
      );
    await sleep(250);
  }
}

async function main(): Promise<void> {
  const database = await createTestDatabase('haven_bench');
  const data = await scratchDir('haven-bench-scale-data-');
  const remotes = await scratchDir('haven-bench-scale-remote-');
  const sim = await XapiSimTestServer.start({ vms: 4, diskSize: String(diskSize), seed: 'bench-scale-out' });
  const services: Service[] = [];
  const common = {
    ...process.env,
    DATABASE_URL: database.url,
    NATS_URL: process.env['HAVEN_TEST_NATS_URL'] ?? 'nats://127.0.0.1:4222',
    HAVEN_NATS_PREFIX: uniqueName('haven_bench'),
    HAVEN_MASTER_KEY: randomBytes(32).toString('hex'),
    HAVEN_HOST: '127.0.0.1',
    HAVEN_PLUGINS: '@haven/remote-local,@haven/job-backup-incremental',
    HAVEN_WORKER_CONCURRENCY: '2',
    MALLOC_ARENA_MAX: '2',
    LOG_LEVEL: 'warn',
  };
  const start = async (role: string, instance: string): Promise<Service> => {
    const port = await freeLoopbackPort();
    const child = spawn(
      process.execPath,
      [join(ROOT, 'bin/run.js'), join(ROOT, `apps/${role}/src/main.ts`)],
      {
        cwd: ROOT,
        env: {
          ...common,
          HAVEN_PORT: String(port),
          HAVEN_DATA: join(data.path, instance),
          HAVEN_INSTANCE: instance,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const output: string[] = [];
    child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    const service = { role, port, child, output };
    services.push(service);
    return service;
  };
  try {
    // The catalog first: it applies migrations and writes the admin key.
    await waitHealthy(await start('catalog', 'catalog'), 120_000);
    const others = [
      await start('gateway', 'gateway'),
      await start('scheduler', 'scheduler'),
      await start('transfer', 'transfer-1'),
    ];
    await Promise.all(others.map((service) => waitHealthy(service, 120_000)));
    const gateway = `http://127.0.0.1:${others[0]?.port}`;
    const key = (await readFile(join(data.path, 'catalog', 'admin-key'), 'utf8')).trim();
    const api = async (method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => {
      const response = await fetch(`${gateway}${path}`, {
        method,
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const answer = (await response.json()) as Record<string, unknown>;
      if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(answer)}`);
      return answer;
    };
    const pool = await api('POST', '/api/v1/pools', {
      name: 'sim',
      url: sim.url,
      username: sim.user,
      password: sim.password,
    });
    const vms = (
      await sim.workload<{ uuid: string; isTemplate: boolean; isSnapshot: boolean }[]>('GET', 'vms')
    )
      .filter((vm) => !vm.isTemplate && !vm.isSnapshot)
      .map((vm) => vm.uuid);
    if (vms.length !== 4) throw new Error(`expected 4 VMs, the simulator has ${vms.length}`);

    const backup = async (label: string): Promise<{ seconds: number; run: Record<string, unknown> }> => {
      const remote = await api('POST', '/api/v1/remotes', {
        name: label,
        type: 'local',
        settings: { path: join(remotes.path, label) },
        encryption: { passphrase: `bench ${label}` },
      });
      const job = await api('POST', '/api/v1/jobs', {
        name: label,
        type: 'backup.incremental',
        selection: { poolId: pool['id'], mode: 'explicit', vms },
        remoteIds: [remote['id']],
        settings: { compression: 'zstd', vmConcurrency: 4 },
      });
      const began = performance.now();
      const started = await api('POST', `/api/v1/jobs/${String(job['id'])}/run`, {});
      for (;;) {
        const run = await api('GET', `/api/v1/runs/${String(started['runId'])}`);
        if (run['status'] !== 'running' && run['status'] !== 'pending') {
          const seconds = (performance.now() - began) / 1000;
          if (run['status'] !== 'success')
            throw new Error(`run ${label} ended ${String(run['status'])}: ${JSON.stringify(run)}`);
          return { seconds, run };
        }
        await sleep(200);
      }
    };
    const workersOf = (run: Record<string, unknown>): string => {
      const counts = new Map<string, number>();
      for (const task of (run['tasks'] as { worker?: string | null }[] | undefined) ?? [])
        counts.set(task.worker ?? '?', (counts.get(task.worker ?? '?') ?? 0) + 1);
      return [...counts].map(([worker, count]) => `${worker}: ${count}`).join(', ');
    };

    const one = await backup('one-worker');
    await waitHealthy(await start('transfer', 'transfer-2'), 120_000);
    const two = await backup('two-workers');

    const disks = 5;
    const dataMiB = (disks * diskSize) / MiB;
    console.log(
      `4 VMs, ${disks} disks of ${diskSize / MiB} MiB (~60 % allocated), zstd + AES-256-GCM, vmConcurrency 4, 2 tasks per worker`,
    );
    console.log(
      `one transfer worker:  ${one.seconds.toFixed(1)} s (${(dataMiB / one.seconds).toFixed(0)} MiB/s of disk); tasks by worker: ${workersOf(one.run)}`,
    );
    console.log(
      `two transfer workers: ${two.seconds.toFixed(1)} s (${(dataMiB / two.seconds).toFixed(0)} MiB/s of disk); tasks by worker: ${workersOf(two.run)}`,
    );
    console.log(`speed-up with the second worker: ${(one.seconds / two.seconds).toFixed(2)} x`);
  } finally {
    for (const service of services.reverse()) {
      if (service.child.exitCode !== null) continue;
      service.child.kill('SIGTERM');
      const exited = await Promise.race([
        once(service.child, 'exit').then(() => true),
        sleep(15_000).then(() => false),
      ]);
      if (!exited) service.child.kill('SIGKILL');
    }
    await sim.stop();
    await database.drop();
    await data.cleanup();
    await remotes.cleanup();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
