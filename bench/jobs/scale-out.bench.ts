/**
 * Scale-out of backup.incremental: one job over 4 VMs (zstd, encrypted remote, vmConcurrency 4),
 * run by the services as separate processes over NATS JetStream and Postgres (catalog, gateway,
 * scheduler, transfer), first with one transfer worker, then with a second one started beside it
 * (a new job and remote, so both runs are full backups of the same data). Each worker takes up to
 * 2 tasks at once (HAVEN_WORKER_CONCURRENCY, its default): one worker backs up 2 VMs at a time,
 * two workers all 4 (a worker allowed 4 would take every task itself). The baseline is the one-worker run of the same script; the figure is its time over the
 * two-worker run's. The simulator runs as its own process; its first VM has two disks.
 * Each transfer worker's peak RSS (the kernel's VmHWM) is read before it stops: the worker memory
 * figure of a real worker process, with the default plugins loaded and 2 tasks at once.
 *
 *   node bin/run.js bench/jobs/scale-out.bench.ts            # 4 VMs, 512 MiB disks
 *   node bin/run.js bench/jobs/scale-out.bench.ts --full     # 4 VMs, 2 GiB disks
 *   ... --compiled: the services run from the production build (tools/scripts/build.mjs, into a
 *       folder of its own under tmp/) as the Dockerfile runs them, without the on-the-fly
 *       TypeScript compiler: what the memory figure should be read from
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { DATA_PATH_NODE_FLAGS } from '@haven/service-core';
import {
  createTestDatabase,
  freeLoopbackPort,
  scratchDir,
  uniqueName,
  XapiSimTestServer,
} from '@haven/testing';

const ROOT = resolve(__dirname, '../..');
const full = process.argv.includes('--full');
const compiled = process.argv.includes('--compiled');
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

/** The production build, in a folder of this run's own (tmp/ is ignored by git). */
function buildServices(): string {
  const out = join(ROOT, 'tmp', `bench-dist-${process.pid}`);
  execFileSync(process.execPath, [join(ROOT, 'tools/scripts/build.mjs'), '--out', out], { stdio: 'inherit' });
  return out;
}

/** Peak and current RSS of a process in MiB, from /proc/<pid>/status (VmHWM, VmRSS). */
async function rssOf(pid: number | undefined): Promise<{ peak: number; now: number }> {
  const status = await readFile(`/proc/${String(pid)}/status`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
  return { peak: kib('VmHWM') / 1024, now: kib('VmRSS') / 1024 };
}

interface MemorySample {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
}

/**
 * Samples a service's memory from its `/metrics` (every 250 ms) and keeps the sample with the
 * highest RSS: what the peak is made of (V8 heap, Buffers and other external memory, the rest).
 */
function sampleMemory(service: Service): { stop: () => MemorySample | undefined } {
  let top: MemorySample | undefined;
  const stopped = new AbortController();
  const gauge = (text: string, name: string): number =>
    Number(new RegExp(`^haven_${name}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(text)?.[1]) / MiB;
  void (async () => {
    while (!stopped.signal.aborted) {
      const text = await fetch(`http://127.0.0.1:${service.port}/metrics`)
        .then((response) => response.text())
        .catch(() => '');
      const sample = {
        rss: gauge(text, 'process_resident_memory_bytes'),
        heapTotal: gauge(text, 'nodejs_heap_size_total_bytes'),
        heapUsed: gauge(text, 'nodejs_heap_size_used_bytes'),
        external: gauge(text, 'nodejs_external_memory_bytes'),
      };
      if (!Number.isNaN(sample.rss) && (top === undefined || sample.rss > top.rss)) top = sample;
      await sleep(250);
    }
  })();
  return {
    stop: () => {
      stopped.abort();
      return top;
    },
  };
}

async function main(): Promise<void> {
  const dist = compiled ? buildServices() : undefined;
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
    HAVEN_WORKER_CONCURRENCY: '2',
    MALLOC_ARENA_MAX: process.env['MALLOC_ARENA_MAX'] ?? '2',
    LOG_LEVEL: 'warn',
  };
  const start = async (role: string, instance: string): Promise<Service> => {
    const port = await freeLoopbackPort();
    const entry =
      dist === undefined
        ? [join(ROOT, 'bin/run.js'), join(ROOT, `apps/${role}/src/main.ts`)]
        : [join(dist, `apps/${role}/src/main.js`)];
    // With the node flags the image and the npm start scripts give every Haven process.
    const child = spawn(process.execPath, [...DATA_PATH_NODE_FLAGS, ...entry], {
      cwd: ROOT,
      env: {
        ...common,
        HAVEN_PORT: String(port),
        HAVEN_DATA: join(data.path, instance),
        HAVEN_INSTANCE: instance,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
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
    const firstWorker = await start('transfer', 'transfer-1');
    const others = [await start('gateway', 'gateway'), await start('scheduler', 'scheduler'), firstWorker];
    await Promise.all(others.map((service) => waitHealthy(service, 120_000)));
    const atRest = await rssOf(firstWorker.child.pid);
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
      await mkdir(join(remotes.path, label));
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

    const firstSampler = sampleMemory(firstWorker);
    const one = await backup('one-worker');
    const firstTop = firstSampler.stop();
    const afterOne = await rssOf(firstWorker.child.pid);
    const secondWorker = await start('transfer', 'transfer-2');
    await waitHealthy(secondWorker, 120_000);
    const two = await backup('two-workers');
    const firstAfterTwo = await rssOf(firstWorker.child.pid);
    const secondAfterTwo = await rssOf(secondWorker.child.pid);

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
    const mib = (value: number): string => `${value.toFixed(0)} MiB`;
    const nodeOptions = `, node ${[...DATA_PATH_NODE_FLAGS, process.env['NODE_OPTIONS'] ?? ''].join(' ').trim()}`;
    console.log(
      `transfer worker RSS (${dist === undefined ? 'on-the-fly TypeScript' : 'production build'}, default plugins, MALLOC_ARENA_MAX=${common.MALLOC_ARENA_MAX}${nodeOptions}): ` +
        `worker 1 ${mib(atRest.now)} at rest, peak ${mib(afterOne.peak)} over the one-worker run (${mib(afterOne.now)} after it), ` +
        `peak ${mib(firstAfterTwo.peak)} by the end; worker 2 peak ${mib(secondAfterTwo.peak)}`,
    );
    if (firstTop !== undefined)
      console.log(
        `worker 1's highest sampled RSS in the one-worker run: ${mib(firstTop.rss)} = V8 heap ${mib(firstTop.heapTotal)} ` +
          `(${mib(firstTop.heapUsed)} used) + external (Buffers) ${mib(firstTop.external)} + the rest ` +
          `${mib(firstTop.rss - firstTop.heapTotal - firstTop.external)} (code, stacks, malloc)`,
      );
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
    if (dist !== undefined) await rm(dist, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
