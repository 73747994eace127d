/**
 * Issue 6's figures for one VM, each against a baseline measured in the same run:
 * (a) full backup.incremental backup of a disk with 75 % of its blocks holding random data,
 *     simulator (own process) to a local remote, no compression, no encryption, vs `cp` of the
 *     same allocated bytes (the simulator's block file) to the same disk, then `sync` of the copy
 *     (the local remote syncs every chunk before the restore point commits); and the same backup with zstd + AES-256-GCM, as MB of
 *     allocated data per CPU-second of this process (the worker) plus the simulator;
 * (b) an incremental backup after 1 % of the disk's blocks changed, as a ratio to (a)'s time;
 * (c) a restore of (a)'s restore point as a new VM, its throughput as a ratio to (a)'s;
 * (d) the peak RSS of this process (it runs the backup as a transfer worker does) during (a).
 * Page caches cannot be dropped here (no root): the simulator's block file was just written and
 * sits in the page cache for both the backup and `cp`.
 *
 *   node bin/run.js bench/jobs/backup-restore.bench.ts             # 1 GiB disk, 768 MiB of data
 *   node bin/run.js bench/jobs/backup-restore.bench.ts --full      # 8 GiB disk, 6 GiB of data
 *   ... --only-full: (a) none/plain only; --only-zstd: (a) zstd + AES only (peak RSS from rest)
 *   ... --repeat=N: (a) none/plain N times, alternated with `cp` + `sync` (cp, backup, cp, …, cp),
 *       each to a new remote: each trial's ratio against the `cp` runs either side of it, and their
 *       median (this VM's disk and CPU steal move a single pair by ±20 %)
 *   ... --drop-caches: empty the page cache before (c) (root only), as a restore long after its
 *       backup finds it
 *   ... --chunk-ids=blake3|sha256|alternate: how the plain repositories name chunks (default blake3,
 *       as a new repository does); alternate: trials 2, 4, … with SHA-256 ids (needs --repeat), and
 *       each kind's median printed
 *   ... --no-launcher-env: without the environment and node flags the worker's launchers set
 *       (MALLOC_ARENA_MAX, --max-semi-space-size)
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import localRemote, { LocalDriver } from '@haven/remote-local';
import { Remote } from '@haven/remote-sdk';
import type { TaskExecutionContext } from '@haven/plugin-sdk';
import { XapiPool } from '@haven/xapi';
import { initRepository, type ChunkIdHash } from '@haven/repository';
import { executeRestoreVm } from '@haven/service-transfer';
import { XapiSimTestServer } from '@haven/testing';
import { settleDisk } from '../bench.kit';
import {
  backupOneVm,
  benchJob,
  launchedWith,
  runAsLaunched,
  simPool,
  withoutLauncherEnvironment,
} from './bench.resources';
import { sizeThreadPoolForDataPath, tuneGarbageCollectorForDataPath } from '@haven/service-core';

const run = promisify(execFile);
const full = process.argv.includes('--full');
const skipZstd = process.argv.includes('--no-zstd');
/** Stop after (a) without compression: what `node --cpu-prof` should look at. */
const onlyFull = process.argv.includes('--only-full');
/** Only the zstd + AES full backup (its peak RSS from the state at rest): memory work. */
const onlyZstd = process.argv.includes('--only-zstd');
/** Diagnosis only: the local remote without its per-object fsyncs (what durability costs). */
const noFsync = process.argv.includes('--no-fsync');
const verbose = process.argv.includes('--verbose');
/**
 * Empty the page cache before (c) (root only): a restore as it usually runs, long after the backup,
 * reading chunks from the disk rather than from memory the backup left them in.
 */
const dropCaches = process.argv.includes('--drop-caches');
/** --event-debounce-ms=N: the XAPI client's pause between event polls (HAVEN_XAPI_EVENT_DEBOUNCE_MS). */
const eventDebounceArg = process.argv.find((arg) => arg.startsWith('--event-debounce-ms='));
const eventDebounceMs = eventDebounceArg === undefined ? undefined : Number(eventDebounceArg.split('=')[1]);
/** --concurrency=N: the job's `concurrency` setting (chunks in flight per disk; 4 by default). */
const concurrencyArg = process.argv.find((arg) => arg.startsWith('--concurrency='));
const concurrency = concurrencyArg === undefined ? 4 : Number(concurrencyArg.split('=')[1]);
const repeatArg = process.argv.find((arg) => arg.startsWith('--repeat='));
const repeat = repeatArg === undefined ? 1 : Number(repeatArg.split('=')[1]);
if (!Number.isInteger(repeat) || repeat < 1 || repeat > 9)
  throw new Error(`--repeat must be an integer from 1 to 9, not ${repeatArg}`);
if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 32)
  throw new Error(
    `--concurrency must be an integer from 1 to 32 (the job setting's range), not ${concurrencyArg}`,
  );
const chunkIdsArg = process.argv.find((arg) => arg.startsWith('--chunk-ids='))?.split('=')[1] ?? 'blake3';
if (chunkIdsArg !== 'blake3' && chunkIdsArg !== 'sha256' && chunkIdsArg !== 'alternate')
  throw new Error(`--chunk-ids must be blake3, sha256 or alternate, not ${chunkIdsArg}`);
if (chunkIdsArg === 'alternate' && repeat < 2)
  throw new Error('--chunk-ids=alternate needs --repeat=2 or more');
/** The chunk id hash of trial `trial`'s repository (trial 0 is the first plain backup). */
const chunkIdHashOf = (trial: number): ChunkIdHash =>
  chunkIdsArg === 'alternate' ? (trial % 2 === 1 ? 'sha256' : 'blake3') : chunkIdsArg;
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const BLOCK = 2 * MiB;
const diskSize = full ? 8 * GiB : 1 * GiB;
const dataBlocks = (diskSize / BLOCK) * 0.75;
const changedBlocks = Math.max(1, Math.round((diskSize / BLOCK) * 0.01));
/** Clock ticks per second of /proc/<pid>/stat (Linux: USER_HZ, 100 on every mainstream kernel). */
const CLOCK_TICKS = 100;

interface Measured<T> {
  seconds: number;
  /** CPU seconds of this process (user + system). */
  selfCpu: number;
  /** Of which in the kernel (file writes, fsyncs, sockets). */
  selfSystem: number;
  /** CPU seconds of the simulator process. */
  simCpu: number;
  /** Peak RSS of this process, sampled every 50 ms. */
  peakRss: number;
  value: T;
}

async function cpuOfPid(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  // after "pid (comm) ": state is field 0, utime field 11, stime field 12
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

async function measured<T>(simPid: number, work: () => Promise<T>): Promise<Measured<T>> {
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 50);
  const simBefore = await cpuOfPid(simPid);
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  try {
    const value = await work();
    const seconds = (performance.now() - start) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    return {
      seconds,
      selfCpu: (cpu.user + cpu.system) / 1e6,
      selfSystem: cpu.system / 1e6,
      simCpu: (await cpuOfPid(simPid)) - simBefore,
      peakRss,
      value,
    };
  } finally {
    clearInterval(sampler);
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return (
    ((sorted[Math.floor((sorted.length - 1) / 2)] ?? 0) + (sorted[Math.ceil((sorted.length - 1) / 2)] ?? 0)) /
    2
  );
}

/** --chunk-ids=alternate: each kind of trial's median time, ratio to `cp` and worker CPU. */
function byChunkIds(backups: Measured<unknown>[], ratios: number[]): string {
  return (['blake3', 'sha256'] as const)
    .map((hash) => {
      const trials = backups.map((backup, trial) => ({ backup, ratio: ratios[trial] ?? 0, trial }));
      const mine = trials.filter(({ trial }) => chunkIdHashOf(trial) === hash);
      return `(a) ${hash} ids, ${mine.length} trials: median ${median(mine.map(({ backup }) => backup.seconds)).toFixed(1)} s = ${median(mine.map(({ ratio }) => ratio)).toFixed(2)}x cp, worker CPU ${median(mine.map(({ backup }) => backup.selfCpu)).toFixed(1)} s + sim ${median(mine.map(({ backup }) => backup.simCpu)).toFixed(1)} s`;
    })
    .join('\n');
}

async function timed(work: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await work();
  return (performance.now() - start) / 1000;
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'haven-bench-backup-restore-'));
  const sim = await withoutLauncherEnvironment(() =>
    XapiSimTestServer.start({
      vms: 1,
      diskSize: String(diskSize),
      allocation: 0,
      seed: 'bench-backup-restore',
    }),
  );
  const url = sim.url;
  const simPid = sim.pid;
  if (simPid === undefined) throw new Error('the simulator has no pid');
  try {
    const pool = await XapiPool.connect({ url, username: 'root', password: 'password' });
    const vm = (await pool.listVms()).at(0);
    if (vm === undefined) throw new Error('the simulator has no VM');
    // Random (incompressible, never repeated) data in 75 % of the blocks.
    await sim.workload('POST', `disks/${vm.uuid}/write`, { blocks: dataBlocks, seed: 'bench-data' });
    const blockFile = join(sim.stateDir, 'blocks.dat');
    const dataBytes = (await stat(blockFile)).size;
    if (dataBytes !== dataBlocks * BLOCK)
      throw new Error(`the simulator's block file holds ${dataBytes} bytes, expected ${dataBlocks * BLOCK}`);

    const cp = async (): Promise<{ copy: number; sync: number }> => {
      await settleDisk(root);
      const target = join(root, 'cp-copy');
      const copy = await timed(() => run('cp', [blockFile, target]));
      const sync = await timed(() => run('sync', [target]));
      await rm(target);
      return { copy, sync };
    };

    const remotes = new Map<string, string | undefined>();
    let lastStep: string | undefined;
    const reportStep = (progress: { step?: string }): void => {
      if (progress.step === lastStep) return;
      lastStep = progress.step;
      console.log(`  ${(performance.now() / 1000).toFixed(2)} s  step ${progress.step ?? '-'}`);
    };
    const context: TaskExecutionContext = {
      signal: new AbortController().signal,
      // --verbose: each new progress step and the run log, with the time since the bench started
      // (where an incremental's time goes).
      reportProgress: verbose ? reportStep : () => undefined,
      log: verbose
        ? (level, message) => console.log(`  ${(performance.now() / 1000).toFixed(2)} s  ${level} ${message}`)
        : () => undefined,
      resources: {
        pool: simPool(url, eventDebounceMs),
        remote: async (id) => {
          const passphrase = remotes.get(id);
          // A local remote's folder must exist (Haven never creates it).
          await mkdir(join(root, id), { recursive: true });
          return {
            id,
            name: id,
            type: 'local',
            store: noFsync
              ? new Remote(new LocalDriver({ path: join(root, id), fsync: false }), { name: id })
              : await localRemote.create({ path: join(root, id) }, { name: id }),
            ...(passphrase === undefined ? {} : { repositoryPassphrase: passphrase }),
          };
        },
      },
    };
    const backup = async (remote: string, compression: 'none' | 'zstd', taskId: string) => {
      const job = benchJob(`bench-${remote}`, vm.uuid, [remote], { compression, concurrency });
      await settleDisk(root);
      if (verbose) console.log(`  ${(performance.now() / 1000).toFixed(2)} s  backup ${taskId} starts`);
      const loop = verbose ? watchEventLoop() : undefined;
      const result = await measured(simPid, () => backupOneVm(job, vm, taskId, context));
      if (verbose)
        console.log(`  ${(performance.now() / 1000).toFixed(2)} s  backup ${taskId} ended; ${loop?.()}`);
      return result;
    };
    const trialRemote = (trial: number): string => (trial === 0 ? 'plain' : `plain-trial-${trial}`);
    for (const [name, passphrase] of [
      ...Array.from({ length: repeat }, (_, trial) => [trialRemote(trial), undefined] as const),
      ['sealed', 'bench passphrase'] as const,
    ]) {
      await mkdir(join(root, name));
      remotes.set(name, passphrase);
    }
    // Other chunk ids than a new repository's: the plain repositories are made beforehand.
    for (let trial = 0; trial < repeat; trial++) {
      const chunkIdHash = chunkIdHashOf(trial);
      if (chunkIdHash === 'blake3') continue;
      const name = trialRemote(trial);
      await initRepository(await localRemote.create({ path: join(root, name) }, { name }), {
        chunkIdHash,
        compression: { codec: 'none' },
      });
    }

    const rssAtStart = process.memoryUsage().rss;
    const cpBefore = await cp();
    // As a transfer worker does before its first task.
    tuneGarbageCollectorForDataPath();
    if (onlyZstd) {
      const sealed = await backup('sealed', 'zstd', 'full-sealed');
      console.log(
        `(a) full backup, zstd + AES: ${sealed.seconds.toFixed(1)} s, worker CPU ${sealed.selfCpu.toFixed(1)} s (${sealed.selfSystem.toFixed(1)} s system) + sim ${sealed.simCpu.toFixed(1)} s, peak RSS ${(sealed.peakRss / MiB).toFixed(0)} MiB; ${(rssAtStart / MiB).toFixed(0)} MiB before the first backup (code loaded); ${launchedWith()}`,
      );
      await pool.close();
      return;
    }
    const plain = await backup('plain', 'none', 'full-plain');
    const describe = (a: Measured<unknown>, before: { copy: number; sync: number }): string =>
      `${a.seconds.toFixed(1)} s, worker CPU ${a.selfCpu.toFixed(1)} s (${a.selfSystem.toFixed(1)} s system) + sim ${a.simCpu.toFixed(1)} s, peak RSS ${(a.peakRss / MiB).toFixed(0)} MiB (cp + sync before it ${before.copy.toFixed(1)} + ${before.sync.toFixed(1)} s)`;
    if (onlyFull && repeat === 1) {
      console.log(`(a) full backup, none/plain: ${describe(plain, cpBefore)}`);
      await pool.close();
      return;
    }
    // --repeat: more trials, each a full backup to a new remote between two `cp` + `sync` runs.
    const trials = [{ backup: plain, cpBefore }];
    let cpAfter = await cp();
    for (let trial = 1; trial < repeat; trial++) {
      const before = cpAfter;
      const remote = trialRemote(trial);
      const measuredTrial = await backup(remote, 'none', `full-${remote}`);
      await rm(join(root, remote), { recursive: true, force: true });
      trials.push({ backup: measuredTrial, cpBefore: before });
      cpAfter = await cp();
      if (verbose) console.log(`  trial ${trial + 1}: ${describe(measuredTrial, before)}`);
    }
    const cpSeconds = (c: { copy: number; sync: number }): number => c.copy + c.sync;
    const trialRatios = trials.map(
      (trial, index) =>
        (cpSeconds(trial.cpBefore) + cpSeconds(trials[index + 1]?.cpBefore ?? cpAfter)) /
        2 /
        trial.backup.seconds,
    );
    const lowestRatio = Math.min(...trialRatios);
    const medianRatio = median(trialRatios);
    const trialSummary =
      repeat === 1
        ? ''
        : `(a) ${repeat} trials, backup vs the mean of the cp + sync runs either side: ${trials
            .map(
              (trial, index) => `${trial.backup.seconds.toFixed(1)} s = ${trialRatios[index]?.toFixed(2)}x`,
            )
            .join(', ')}; median ${medianRatio.toFixed(2)}x, lowest ${lowestRatio.toFixed(2)}x` +
          (chunkIdsArg === 'alternate'
            ? `\n${byChunkIds(
                trials.map((trial) => trial.backup),
                trialRatios,
              )}`
            : '');
    if (onlyFull) {
      console.log(`(a) full backup, none/plain: ${describe(plain, cpBefore)}`);
      console.log(trialSummary);
      await pool.close();
      return;
    }
    await sim.workload('POST', `disks/${vm.uuid}/write`, { blocks: changedBlocks, seed: 'bench-change' });
    const incremental = await backup('plain', 'none', 'incremental-plain');

    const point = plain.value.restorePoints.at(0);
    if (point === undefined) throw new Error('the full backup committed no restore point');
    if (dropCaches) {
      await run('sync', []);
      await writeFile('/proc/sys/vm/drop_caches', '3\n');
    }
    await settleDisk(root);
    const restore = await measured(simPid, () =>
      executeRestoreVm(
        {
          taskId: 'bench-restore',
          input: {
            restorePointId: 'bench',
            remoteId: 'plain',
            manifestKey: point.manifestKey,
            poolId: 'sim',
            name: 'restored',
          },
        },
        context,
      ),
    );
    const restoredVm = await pool.getVm(restore.value.vmUuid);
    await pool.destroyVm(restoredVm.ref, { withDisks: true });
    await rm(join(root, 'plain'), { recursive: true, force: true });

    const sealed = skipZstd ? undefined : await backup('sealed', 'zstd', 'full-sealed');
    await pool.close();

    const gib = (bytes: number) => (bytes / GiB).toFixed(2);
    const mbs = (bytes: number, seconds: number) => (bytes / 1e6 / seconds).toFixed(0);
    // The first trial's cp runs (before and after it), as the figures below compare with it.
    const cpAfterFirst = trials[1]?.cpBefore ?? cpAfter;
    const cpMean = (cpSeconds(cpBefore) + cpSeconds(cpAfterFirst)) / 2;
    console.log(
      `disk ${gib(diskSize)} GiB, ${dataBlocks} of ${diskSize / BLOCK} blocks random data (${gib(dataBytes)} GiB)`,
    );
    console.log(
      `cp + sync of the same bytes:       before ${cpBefore.copy.toFixed(1)} + ${cpBefore.sync.toFixed(1)} s, after ${cpAfterFirst.copy.toFixed(1)} + ${cpAfterFirst.sync.toFixed(1)} s (mean ${cpMean.toFixed(1)} s, ${mbs(dataBytes, cpMean)} MB/s)`,
    );
    console.log(
      `(a) full backup, none/plain:       ${plain.seconds.toFixed(1)} s, ${mbs(dataBytes, plain.seconds)} MB/s of data = ${(cpMean / plain.seconds).toFixed(2)} x cp throughput; CPU worker ${plain.selfCpu.toFixed(1)} s (${plain.selfSystem.toFixed(1)} s system) + sim ${plain.simCpu.toFixed(1)} s`,
    );
    if (trialSummary !== '') console.log(trialSummary);
    if (sealed !== undefined) {
      const cpu = sealed.selfCpu + sealed.simCpu;
      console.log(
        `(a) full backup, zstd + AES:       ${sealed.seconds.toFixed(1)} s, ${mbs(dataBytes, sealed.seconds)} MB/s wall; CPU worker ${sealed.selfCpu.toFixed(1)} s (${sealed.selfSystem.toFixed(1)} s system) + sim ${sealed.simCpu.toFixed(1)} s = ${mbs(dataBytes, cpu)} MB per CPU-second (${mbs(dataBytes, sealed.selfCpu)} per worker CPU-second); ${(cpMean / sealed.seconds).toFixed(2)} x cp`,
      );
    }
    console.log(
      `(b) incremental, ${changedBlocks} blocks (1 %) changed: ${incremental.seconds.toFixed(2)} s = ${(incremental.seconds / plain.seconds).toFixed(3)} x full; ${incremental.value.disks[0]?.mode ?? '?'}, read ${((incremental.value.disks[0]?.bytes ?? 0) / MiB).toFixed(0)} MiB`,
    );
    const sent = restore.value.disks.reduce((sum, disk) => sum + disk.bytesSent, 0);
    console.log(
      `(c) restore as a new VM:           ${restore.seconds.toFixed(1)} s, ${mbs(dataBytes, restore.seconds)} MB/s of data = ${(plain.seconds / restore.seconds).toFixed(2)} x the backup's throughput; ${gib(sent)} GiB sent as ${restore.value.disks.map((disk) => disk.format).join(', ')}; CPU worker ${restore.selfCpu.toFixed(1)} s + sim ${restore.simCpu.toFixed(1)} s`,
    );
    console.log(
      `(d) peak RSS of the worker:        ${(plain.peakRss / MiB).toFixed(0)} MiB during (a) none/plain${sealed === undefined ? '' : `, ${(sealed.peakRss / MiB).toFixed(0)} MiB during zstd + AES`}, ${(restore.peakRss / MiB).toFixed(0)} MiB during (c); ${(rssAtStart / MiB).toFixed(0)} MiB before the first backup (code loaded); ${launchedWith()}`,
    );
  } finally {
    await sim.stop();
    await rm(root, { recursive: true, force: true });
  }
}

// As a transfer worker's entry point does, before anything starts an asynchronous call.
sizeThreadPoolForDataPath();
runAsLaunched(main).catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});

/**
 * --verbose: how busy the event loop was over a backup, and how long a callback that became ready
 * waited for it (each of a chunk write's steps is one such wait). Returns the summary's reader.
 */
function watchEventLoop(): () => string {
  const utilization = performance.eventLoopUtilization();
  const delay = monitorEventLoopDelay({ resolution: 1 });
  const scheduled = mainThreadSchedule();
  delay.enable();
  return () => {
    delay.disable();
    const busy = performance.eventLoopUtilization(utilization).utilization;
    const ms = (percentile: number): string => (delay.percentile(percentile) / 1e6).toFixed(1);
    const [ran, waited] = mainThreadSchedule().map((value, i) => (value - (scheduled[i] ?? 0)) / 1e9);
    return (
      `event loop busy ${(busy * 100).toFixed(0)} %, delay p50 ${ms(50)} p90 ${ms(90)} p99 ${ms(99)} ms; ` +
      `main thread on a core ${ran.toFixed(1)} s, runnable waiting for one ${waited.toFixed(1)} s`
    );
  };
}

/** The main thread's time on a core and time runnable on a run queue, in ns (Linux schedstat). */
function mainThreadSchedule(): number[] {
  try {
    return readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').trim().split(' ').map(Number);
  } catch {
    return [0, 0];
  }
}
