/**
 * Does a transfer worker stay under 256 MiB of RSS whatever the disk's size? Per disk the worker
 * holds a DiskIndex of 32 bytes per 2 MiB block of the disk's *virtual* size (32 MiB at 2 TiB, the
 * VHD maximum), and an incremental also the base restore point's index and its chunk ids. Two
 * disks with the same data (random, incompressible) but different virtual sizes, 8 GiB and 2 TiB,
 * each through the same three steps as backup-restore.bench.ts runs them (simulator in its own
 * process, local remotes in a temp folder, GC tuned before the first backup):
 *   1. full backup, no compression, plain remote;
 *   2. 1 % of the data blocks written again, then an incremental backup to the same remote;
 *   3. full backup with zstd + AES-256-GCM (a remote with a passphrase).
 * Per step: this worker's peak RSS during the step (VmHWM, reset before the step through
 * /proc/self/clear_refs, and RSS sampled every 20 ms), its RSS before the step, and the time.
 * Each disk size runs in a process of its own (this script again, with --disk-gib), so neither
 * inherits the heap the other grew; the simulator only supports one disk size per run anyway.
 * No restore: a 2 TiB restore would stream the whole disk.
 *
 *   node bench/repository/precompiled.runner.js bench/jobs/disk-size-memory.bench.ts
 *   ... --virtual-gib N: the big disk's virtual size (default 2048 = 2 TiB)
 *   ... --data-mib N: random data written to each disk (default 1024 = 512 blocks of 2 MiB)
 *   ... --no-launcher-env: without the environment and node flags the worker's launchers set
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { TaskExecutionContext } from '@haven/plugin-sdk';
import { XapiPool } from '@haven/xapi';
import { XapiSimTestServer } from '@haven/testing';
import { sizeThreadPoolForDataPath, tuneGarbageCollectorForDataPath } from '@haven/service-core';
import { arg, settleDisk } from '../bench.kit';
import {
  backupOneVm,
  benchJob,
  launchedWith,
  localRemotes,
  rerunForResult,
  runAsLaunched,
  simPool,
  withoutLauncherEnvironment,
} from './bench.resources';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const BLOCK = 2 * MiB;
/** What a transfer worker promises to stay under. */
const LIMIT = 256 * MiB;
/** DiskIndex bytes per block of the virtual size. */
const INDEX_BYTES_PER_BLOCK = 32;
const SMALL_GIB = 8;
const virtualGib = arg('virtual-gib', 2048);
const dataMib = arg('data-mib', 1024);
const dataBlocks = (dataMib * MiB) / BLOCK;
const changedBlocks = Math.max(1, Math.round(dataBlocks * 0.01));
/** Set in the child that measures one disk size. */
const diskGib = arg('disk-gib', 0);
const RESULT = 'DISK-SIZE-RESULT ';
const SAMPLE_MS = 20;

if (!Number.isInteger(dataBlocks) || dataBlocks < 1 || dataBlocks > (SMALL_GIB * GiB) / BLOCK)
  throw new Error(`--data-mib must be a multiple of 2 from 2 to ${SMALL_GIB * 1024}, not ${dataMib}`);
if (!Number.isInteger(virtualGib) || virtualGib <= SMALL_GIB || virtualGib > 2048)
  throw new Error(`--virtual-gib must be an integer above ${SMALL_GIB} and at most 2048, not ${virtualGib}`);

interface StepFigures {
  step: string;
  /** The backup's mode for the disk (full, delta...), as the job reports it. */
  mode: string;
  /** Bytes the job read from the disk. */
  read: number;
  rssBefore: number;
  /** VmHWM after a reset before the step; undefined where clear_refs is refused. */
  hwm: number | undefined;
  /** RSS sampled every SAMPLE_MS. */
  sampled: number;
  seconds: number;
}

interface DiskFigures {
  diskGib: number;
  virtualSize: number;
  rssAtStart: number;
  writeSeconds: number;
  steps: StepFigures[];
  launchedWith: string;
}

/** VmHWM of this process in bytes (Linux), or undefined. */
async function highWaterMark(): Promise<number | undefined> {
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '');
  const kib = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
  return kib === undefined ? undefined : Number(kib) * 1024;
}

/** Sets VmHWM back to the current RSS (`5` to clear_refs); false where the kernel refuses. */
async function resetHighWaterMark(): Promise<boolean> {
  return writeFile('/proc/self/clear_refs', '5').then(
    () => true,
    () => false,
  );
}

async function measuredStep<T>(
  step: string,
  work: () => Promise<T>,
): Promise<{ figures: Omit<StepFigures, 'mode' | 'read'>; value: T }> {
  const rssBefore = process.memoryUsage.rss();
  const reset = await resetHighWaterMark();
  let sampled = rssBefore;
  const sampler = setInterval(() => (sampled = Math.max(sampled, process.memoryUsage.rss())), SAMPLE_MS);
  const start = performance.now();
  try {
    const value = await work();
    const seconds = (performance.now() - start) / 1000;
    sampled = Math.max(sampled, process.memoryUsage.rss());
    const hwm = reset ? await highWaterMark() : undefined;
    return { figures: { step, rssBefore, hwm, sampled, seconds }, value };
  } finally {
    clearInterval(sampler);
  }
}

/** The child: one simulator with one VM whose disk is `diskGib` GiB, the three steps. */
async function measureDisk(): Promise<DiskFigures> {
  const rssAtStart = process.memoryUsage.rss();
  const root = await mkdtemp(join(tmpdir(), 'haven-bench-disk-size-'));
  const sim = await withoutLauncherEnvironment(() =>
    XapiSimTestServer.start({
      vms: 1,
      diskSize: `${diskGib}GiB`,
      allocation: 0,
      seed: 'bench-disk-size',
    }),
  );
  try {
    const pool = await XapiPool.connect({ url: sim.url, username: 'root', password: 'password' });
    try {
      const vm = (await pool.listVms()).at(0);
      if (vm === undefined) throw new Error('the simulator has no VM');
      const listed = await sim.workload<{ uuid: string; disks: { virtualSize: number }[] }[]>('GET', 'vms');
      const virtualSize = listed.find((entry) => entry.uuid === vm.uuid)?.disks[0]?.virtualSize ?? 0;
      if (virtualSize !== diskGib * GiB)
        throw new Error(`the simulator's disk is ${virtualSize} bytes, not ${diskGib} GiB`);
      const writeStart = performance.now();
      await sim.workload('POST', `disks/${vm.uuid}/write`, { blocks: dataBlocks, seed: 'bench-data' });
      const writeSeconds = (performance.now() - writeStart) / 1000;
      const dataBytes = (await stat(join(sim.stateDir, 'blocks.dat'))).size;
      if (dataBytes !== dataBlocks * BLOCK)
        throw new Error(
          `the simulator's block file holds ${dataBytes} bytes, expected ${dataBlocks * BLOCK}`,
        );

      const context: TaskExecutionContext = {
        signal: new AbortController().signal,
        reportProgress: () => undefined,
        log: () => undefined,
        resources: {
          pool: simPool(sim.url),
          remote: localRemotes(root, (id) => (id === 'sealed' ? 'bench passphrase' : undefined)),
        },
      };
      const steps: StepFigures[] = [];
      const backup = async (step: string, remote: string, compression: 'none' | 'zstd') => {
        const job = benchJob(`bench-${remote}`, vm.uuid, [remote], { compression, concurrency: 4 });
        await settleDisk(root);
        const { figures, value } = await measuredStep(step, () => backupOneVm(job, vm, step, context));
        const disk = value.disks.at(0);
        steps.push({ ...figures, mode: disk?.mode ?? '?', read: disk?.bytes ?? 0 });
      };

      // As a transfer worker does before its first task.
      tuneGarbageCollectorForDataPath();
      await backup('full', 'plain', 'none');
      await sim.workload('POST', `disks/${vm.uuid}/write`, { blocks: changedBlocks, seed: 'bench-change' });
      await backup('incremental', 'plain', 'none');
      await backup('full zstd+AES', 'sealed', 'zstd');
      return { diskGib, virtualSize, rssAtStart, writeSeconds, steps, launchedWith: launchedWith() };
    } finally {
      await pool.close();
    }
  } finally {
    await sim.stop();
    await rm(root, { recursive: true, force: true });
  }
}

/** This script again with --disk-gib `gib`, in the same runner and with the same flags and environment. */
function runChild(gib: number): Promise<DiskFigures> {
  return rerunForResult<DiskFigures>(['--disk-gib', String(gib)], RESULT, `${gib} GiB child`);
}

const mib = (bytes: number | undefined): string => (bytes === undefined ? '-' : (bytes / MiB).toFixed(0));
const peakOf = (step: StepFigures): number => Math.max(step.hwm ?? 0, step.sampled);
const sizeName = (gib: number): string => (gib % 1024 === 0 ? `${gib / 1024} TiB` : `${gib} GiB`);

function report(small: DiskFigures, big: DiskFigures): void {
  const indexMib = (gib: number): string => mib(((gib * GiB) / BLOCK) * INDEX_BYTES_PER_BLOCK);
  console.log(
    `worker memory against the disk's virtual size: ${dataBlocks} blocks (${dataMib} MiB) of random data on each disk, ${changedBlocks} rewritten before the incremental; each disk size in its own process (${big.launchedWith}; ${require.main?.filename.endsWith('precompiled.runner.js') === true ? 'precompiled' : 'bin/run.js'}, Node ${process.version})`,
  );
  console.log(
    `DiskIndex at 32 B per 2 MiB block: ${indexMib(small.diskGib)} MiB for ${sizeName(small.diskGib)}, ${indexMib(big.diskGib)} MiB for ${sizeName(big.diskGib)}`,
  );
  console.log(
    `disk     | step          | mode        | read MiB | RSS before | peak (VmHWM) | peak (sampled ${SAMPLE_MS} ms) | time s`,
  );
  for (const disk of [small, big]) {
    console.log(
      `${sizeName(disk.diskGib).padEnd(8)} | (start)       |             |          | ${mib(disk.rssAtStart).padStart(6)} MiB |              |                      | data written in ${disk.writeSeconds.toFixed(1)} s`,
    );
    for (const step of disk.steps)
      console.log(
        `${sizeName(disk.diskGib).padEnd(8)} | ${step.step.padEnd(13)} | ${step.mode.padEnd(11)} | ${mib(step.read).padStart(8)} | ${mib(step.rssBefore).padStart(6)} MiB | ${mib(step.hwm).padStart(8)} MiB | ${mib(step.sampled).padStart(16)} MiB | ${step.seconds.toFixed(1).padStart(6)}`,
      );
  }
  const tib = (big.diskGib - small.diskGib) / 1024;
  for (const [i, step] of small.steps.entries()) {
    const other = big.steps.at(i);
    if (other === undefined) continue;
    const cost = peakOf(other) - peakOf(step);
    const under = (peak: number) => (peak < LIMIT ? 'under' : `OVER by ${mib(peak - LIMIT)} MiB`);
    // Growth over the RSS before the step: less sensitive to what each process held before it.
    const growth = peakOf(other) - other.rssBefore - (peakOf(step) - step.rssBefore);
    const signed = (bytes: number) => `${bytes >= 0 ? '+' : ''}${mib(bytes)}`;
    console.log(
      `${step.step.padEnd(13)}: ${sizeName(big.diskGib)} peak - ${sizeName(small.diskGib)} peak = ${signed(cost)} MiB (${signed(cost / tib)} MiB per TiB of virtual size; growth over RSS before: ${signed(growth)} MiB); 256 MiB: ${sizeName(small.diskGib)} ${under(peakOf(step))} (${mib(peakOf(step))}), ${sizeName(big.diskGib)} ${under(peakOf(other))} (${mib(peakOf(other))})`,
    );
  }
}

async function main(): Promise<void> {
  if (diskGib > 0) {
    const figures = await measureDisk();
    console.log(`${RESULT}${JSON.stringify(figures)}`);
    return;
  }
  const small = await runChild(SMALL_GIB);
  const big = await runChild(virtualGib);
  report(small, big);
}

// As a transfer worker's entry point does, before anything starts an asynchronous call.
sizeThreadPoolForDataPath();
runAsLaunched(main).catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
