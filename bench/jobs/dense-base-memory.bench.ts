/**
 * Does a transfer worker stay under 256 MiB of RSS for an incremental backup over a DENSELY
 * allocated 2 TiB base (1,048,576 blocks of 2 MiB, every one holding its own chunk)? The
 * disk-size-memory bench only had a sparse 2 TiB disk (1 GiB of data). 2 TiB of real data cannot be
 * backed up here, so the base is fabricated on a local remote, encrypted (AES-256-GCM, HMAC ids) with
 * zstd as in production: a restore point written by the real writer with no block, whose disk index
 * is then replaced by a dense one (seeded pseudo-random ids, memory.kit.ts) sealed by the repository
 * itself (manifest rewritten with its digest and counts), and an empty file under chunks/ for every
 * id (only existence is ever checked: the measured step gives full 2 MiB blocks, so no base chunk is
 * read; an empty chunk object would fail to decode if one were).
 *
 * The measured step, in a child process started with the worker's launcher environment and flags
 * (runAsLaunched: MALLOC_ARENA_MAX=2, --max-semi-space-size=1; libuv pool and GC tuned as a worker
 * does), is what vm-backup.executor.ts does for one disk:
 *   open    openRepository (scrypt of the passphrase), openRestorePoint of the base (its DiskIndex);
 *   inspect inspectBase with verification 'existence' (the local remote: folder listings);
 *   start   createRestorePointWriter with knownChunks: { restorePoints: [base] };
 *   write   writeDisk(meta, blocks, { base }) with --changed random full blocks of random data (~0.05 %
 *           of the disk by default; the index encoded, sealed and uploaded at its end);
 *   commit  the manifest.
 * Per phase: RSS before, VmHWM (reset through /proc/self/clear_refs at the phase's start) and RSS
 * and heap + array buffers sampled every 5 ms. Up to three sides, each in a process of its own: NEW, the
 * writer's default knownChunksMax (KNOWN_CHUNKS_MAX: past it no chunk id is kept, the remote is
 * asked per chunk), and OLD, knownChunksMax: Infinity (the base's ids kept in memory, as before);
 * with --sides list, LIST: a first backup of another VM into the same repository (knownChunks
 * 'list': the listing of chunks/ that stops past the cap), --changed blocks of a new 64 GiB disk.
 *
 *   node --expose-gc bench/repository/precompiled.runner.js bench/jobs/dense-base-memory.bench.ts
 *   ... --blocks N: blocks of the base (default 1048576 = 2 TiB); --changed N (default 512)
 *   ... --sides new,old; --no-launcher-env: without the launchers' environment and flags
 *   ... --kept: also RSS and heap + array buffers after a forced collection at each phase's end
 *       (what the phase leaves reachable; the next phase then starts without the garbage)
 * Needs ~1.1 M free inodes under the temp folder (the empty chunk files; removed at the end).
 */
import { randomFillSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import localRemote from '@haven/remote-local';
import {
  chunkKey,
  DiskIndex,
  type DiskBlock,
  initRepository,
  KNOWN_CHUNKS_MAX,
  manifestKey,
  openRepository,
  type Repository,
  type RestorePointManifest,
} from '@haven/repository';
import { sizeThreadPoolForDataPath, tuneGarbageCollectorForDataPath } from '@haven/service-core';
// Not exported by the plugin's package: the function the executor runs before an incremental.
import { inspectBase } from '../../libs/jobs/backup-incremental/src/base.inspection';
import { arg, runBench } from '../bench.kit';
import { launchedWith, rerunForResult, runAsLaunched } from './bench.resources';
import { MiB, seededIds, settle, writeEmptyChunks } from '../repository/memory.kit';

const BLOCK = 2 * MiB;
const ID = 32;
/** What a transfer worker promises to stay under. */
const LIMIT = 256 * MiB;
const SAMPLE_MS = 5;
const PASSPHRASE = 'bench dense base';
const DISK = 'xvda';
const VM = { uuid: '0d3c5e1a-7b2f-4c8d-9e6a-1f2b3c4d5e6f', name: 'dense-2tib' };
const RESULT = 'DENSE-BASE-RESULT ';

const blocks = arg('blocks', 1_048_576);
const changed = arg('changed', 512);
const option = (name: string): string | undefined => {
  const at = process.argv.indexOf(`--${name}`);
  return at < 0 ? undefined : process.argv[at + 1];
};
type Side = 'new' | 'old' | 'list';
const sides = (option('sides') ?? 'new,old').split(',') as Side[];
const keptAfterPhases = process.argv.includes('--kept');

interface Phase {
  phase: string;
  rssBefore: number;
  /** VmHWM after a reset at the phase's start; undefined where clear_refs is refused. */
  hwm: number | undefined;
  /** RSS sampled every SAMPLE_MS (and at the phase's end). */
  sampledRss: number;
  /** heapUsed + arrayBuffers, sampled likewise. */
  sampledHeap: number;
  rssAfter: number;
  seconds: number;
  /** With --kept: RSS and heapUsed + arrayBuffers after a forced collection at the phase's end. */
  keptRss?: number;
  keptHeap?: number;
}

interface SideResult {
  side: Side;
  knownChunksMax: number;
  rssAtStart: number;
  phases: Phase[];
  allocatedBlocks: number;
  inheritedBlocks: number;
  uploadedChunks: number;
  reusedChunks: number;
  launchedWith: string;
}

async function highWaterMark(): Promise<number | undefined> {
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '');
  const kib = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
  return kib === undefined ? undefined : Number(kib) * 1024;
}

const resetHighWaterMark = (): Promise<boolean> =>
  writeFile('/proc/self/clear_refs', '5').then(
    () => true,
    () => false,
  );

/** Runs `work` as one phase, its memory sampled. */
async function phase<T>(phases: Phase[], name: string, work: () => Promise<T>): Promise<T> {
  const rssBefore = process.memoryUsage.rss();
  const reset = await resetHighWaterMark();
  let sampledRss = rssBefore;
  let sampledHeap = 0;
  const sample = (): void => {
    const usage = process.memoryUsage();
    sampledRss = Math.max(sampledRss, usage.rss);
    sampledHeap = Math.max(sampledHeap, usage.heapUsed + usage.arrayBuffers);
  };
  sample();
  const timer = setInterval(sample, SAMPLE_MS);
  const start = performance.now();
  try {
    const value = await work();
    const seconds = (performance.now() - start) / 1000;
    sample();
    const hwm = reset ? await highWaterMark() : undefined;
    const rssAfter = process.memoryUsage.rss();
    let kept = {};
    if (keptAfterPhases) {
      // What the phase leaves reachable (its garbage collected): not what a worker does, so the
      // next phase's figures then start lower than in a run without --kept.
      await settle();
      const usage = process.memoryUsage();
      kept = { keptRss: usage.rss, keptHeap: usage.heapUsed + usage.arrayBuffers };
    }
    phases.push({ phase: name, rssBefore, hwm, sampledRss, sampledHeap, rssAfter, seconds, ...kept });
    return value;
  } finally {
    clearInterval(timer);
  }
}

/** The changed blocks: `changed` distinct block numbers (seeded), ascending as CBT lists them. */
function changedBlocks(): number[] {
  const picks = seededIds(changed * 4, 99);
  const chosen = new Set<number>();
  for (let at = 0; chosen.size < changed && at + 4 <= picks.length; at += 4)
    chosen.add(picks.readUInt32LE(at) % blocks);
  return [...chosen].sort((a, b) => a - b);
}

/** Full 2 MiB blocks of random data, from buffers the writer gives back (as an export's pool does). */
function* changedData(numbers: readonly number[]): Generator<DiskBlock> {
  const free: Buffer[] = [];
  for (const index of numbers) {
    const data = free.pop() ?? Buffer.allocUnsafe(BLOCK);
    randomFillSync(data);
    yield { index, data, release: () => free.push(data) };
  }
}

type LocalStore = Awaited<ReturnType<typeof localRemote.create>>;

/**
 * Measured: the repository back as it was for the next side (the restore point written and the
 * chunks of its written blocks gone), and the remote closed.
 */
async function removeWritten(
  repository: Repository,
  store: LocalStore,
  restorePoint: string,
  blocks: readonly number[],
): Promise<void> {
  const point = await repository.openRestorePoint(restorePoint);
  for (const block of blocks) {
    const id = point.disk(DISK).chunkId(block);
    if (id !== undefined) await store.delete(chunkKey(id));
  }
  await repository.deleteRestorePoint(restorePoint);
  await store.close();
}

/** The child: the measured step, one side. */
async function measure(side: Side, root: string, baseId: string): Promise<SideResult> {
  // As a transfer worker does before its first task.
  tuneGarbageCollectorForDataPath();
  await settle();
  const rssAtStart = process.memoryUsage.rss();
  const phases: Phase[] = [];
  const store = await localRemote.create({ path: root }, { name: 'dense' });
  if (side === 'list') return { ...(await firstFullBackup(store, phases)), rssAtStart };
  const { repository, reader } = await phase(phases, 'open', async () => {
    const opened = await openRepository(store, { key: PASSPHRASE });
    const points = await opened.listRestorePoints({ vmUuid: VM.uuid });
    if (points.length !== 1 || points[0]?.id !== baseId) throw new Error('the base is not listed');
    return { repository: opened, reader: await opened.openRestorePoint(baseId) };
  });
  const damage = await phase(phases, 'inspect', () =>
    inspectBase(repository, reader, 'existence', (message) => console.error(message)),
  );
  if (damage.reasons.length > 0) throw new Error(`the base is damaged: ${damage.reasons.join('; ')}`);
  const knownChunksMax = side === 'old' ? Infinity : KNOWN_CHUNKS_MAX;
  const base = reader.disk(DISK);
  const writer = await phase(phases, 'start writer', () =>
    repository.createRestorePointWriter(
      { vm: VM, tenant: 'bench', job: { id: 'bench-dense', name: 'bench' } },
      {
        concurrency: 4,
        expectedBytes: base.virtualSize,
        knownChunks: { restorePoints: [baseId] },
        knownChunksMax,
      },
    ),
  );
  const numbers = changedBlocks();
  const disk = await phase(phases, 'write disk', () =>
    writer.writeDisk({ key: DISK, virtualSize: base.virtualSize }, changedData(numbers), { base }),
  );
  const written = await phase(phases, 'commit', () => writer.commit());
  await removeWritten(repository, store, written.id, numbers);
  return {
    side,
    knownChunksMax,
    rssAtStart,
    phases,
    allocatedBlocks: disk.allocatedBlocks,
    inheritedBlocks: disk.inheritedBlocks ?? 0,
    uploadedChunks: disk.uploadedChunks,
    reusedChunks: disk.reusedChunks,
    launchedWith: launchedWith(),
  };
}

/**
 * LIST: a first backup of another VM into this repository, as the executor starts one without a
 * base (knownChunks 'list', the default cap): a listing of chunks/ that stops past the cap, then a
 * stat per new chunk. `changed` random blocks of a new 64 GiB disk.
 */
async function firstFullBackup(store: LocalStore, phases: Phase[]): Promise<Omit<SideResult, 'rssAtStart'>> {
  const repository = await phase(phases, 'open', () => openRepository(store, { key: PASSPHRASE }));
  const writer = await phase(phases, 'start writer', () =>
    repository.createRestorePointWriter(
      { vm: { ...VM, uuid: 'f1a2b3c4-0000-4000-8000-000000000001' }, tenant: 'bench' },
      { concurrency: 4, knownChunks: 'list' },
    ),
  );
  const virtualSize = 64 * 1024 * MiB;
  const numbers = changedBlocks().map((block) => block % (virtualSize / BLOCK));
  const unique = [...new Set(numbers)].sort((a, b) => a - b);
  const disk = await phase(phases, 'write disk', () =>
    writer.writeDisk({ key: DISK, virtualSize }, changedData(unique)),
  );
  const written = await phase(phases, 'commit', () => writer.commit());
  await removeWritten(repository, store, written.id, unique);
  return {
    side: 'list',
    knownChunksMax: KNOWN_CHUNKS_MAX,
    phases,
    allocatedBlocks: disk.allocatedBlocks,
    inheritedBlocks: 0,
    uploadedChunks: disk.uploadedChunks,
    reusedChunks: disk.reusedChunks,
    launchedWith: launchedWith(),
  };
}

// ---- The parent: the fabricated repository, then each side in a child. ----

/** The base: a restore point of one 2 TiB disk, every block its own chunk (ids seeded). */
async function fabricate(root: string): Promise<{ baseId: string; seconds: number; files: number }> {
  const started = performance.now();
  const store = await localRemote.create({ path: root }, { name: 'dense' });
  const repository: Repository = await initRepository(store, {
    key: PASSPHRASE,
    compression: { codec: 'zstd', level: 1 },
  });
  const virtualSize = blocks * BLOCK;
  // The real writer, no block: a manifest and an index as production writes them.
  const writer = await repository.createRestorePointWriter(
    { vm: VM, tenant: 'bench', job: { id: 'bench-dense', name: 'bench' } },
    { knownChunks: 'none' },
  );
  await writer.writeDisk({ key: DISK, virtualSize }, []);
  const empty = await writer.commit();
  const ids = seededIds(blocks, 2026);
  const index = new DiskIndex(virtualSize, BLOCK);
  for (let block = 0; block < blocks; block++) index.set(block, ids.subarray(block * ID, (block + 1) * ID));
  const disk = empty.disks.at(0);
  if (disk === undefined) throw new Error('the writer wrote no disk');
  // Sealed as the writer seals an index.
  const sealed = await repository.sealDiskIndex(disk.index, index);
  await store.put(disk.index, sealed.body);
  const manifest: RestorePointManifest = {
    ...empty,
    disks: [
      {
        ...disk,
        indexDigest: sealed.digest,
        allocatedBlocks: blocks,
        logicalBytes: virtualSize,
        uploadedChunks: blocks,
        uploadedBytes: blocks * BLOCK,
      },
    ],
    sizes: { logicalBytes: virtualSize, uploadedBytes: blocks * BLOCK },
  };
  const key = manifestKey(manifest.id);
  await store.put(key, await repository.sealMetadata('manifest', key, Buffer.from(JSON.stringify(manifest))));
  await store.close();
  const files = writeEmptyChunks(root, ids, blocks);
  return { baseId: manifest.id, seconds: (performance.now() - started) / 1000, files };
}

/** This script again with --side, in the same runner and with the same flags and environment. */
function runSide(side: Side, root: string, baseId: string): Promise<SideResult> {
  return rerunForResult<SideResult>(
    ['--side', side, '--root', root, '--base', baseId],
    RESULT,
    `${side} side`,
  );
}

const mib = (bytes: number | undefined): string => (bytes === undefined ? '-' : (bytes / MiB).toFixed(0));
const peakOf = (phase: Phase): number => Math.max(phase.hwm ?? 0, phase.sampledRss);
const stepPeak = (result: SideResult): number => Math.max(...result.phases.map(peakOf));

function report(results: SideResult[]): void {
  const title = (result: SideResult): string =>
    result.side === 'new'
      ? `NEW knownChunksMax ${result.knownChunksMax}`
      : result.side === 'list'
        ? `LIST first full, 'list'`
        : `OLD knownChunksMax Infinity`;
  console.log(
    `side                           | phase        | RSS before | VmHWM     | RSS sampled | heap+buf sampled | RSS after | time s${keptAfterPhases ? ' | after gc: RSS, heap+buf' : ''}`,
  );
  for (const result of results) {
    console.log(`${title(result).padEnd(30)} | (start)      | ${mib(result.rssAtStart).padStart(6)} MiB |`);
    for (const phase of result.phases)
      console.log(
        `${title(result).padEnd(30)} | ${phase.phase.padEnd(12)} | ${mib(phase.rssBefore).padStart(6)} MiB | ${mib(phase.hwm).padStart(5)} MiB | ${mib(phase.sampledRss).padStart(7)} MiB | ${mib(phase.sampledHeap).padStart(12)} MiB | ${mib(phase.rssAfter).padStart(5)} MiB | ${phase.seconds.toFixed(2).padStart(6)}${phase.keptRss === undefined ? '' : ` | ${mib(phase.keptRss).padStart(5)} MiB, ${mib(phase.keptHeap).padStart(4)} MiB`}`,
      );
  }
  for (const result of results) {
    const peak = stepPeak(result);
    console.log(
      `${title(result)}: step peak ${mib(peak)} MiB (${mib(peak - result.rssAtStart)} over the ${mib(result.rssAtStart)} MiB before the step), 256 MiB: ${peak < LIMIT ? 'under' : `OVER by ${mib(peak - LIMIT)} MiB`}; disk: ${result.allocatedBlocks} blocks allocated, ${result.inheritedBlocks} inherited, ${result.uploadedChunks} uploaded, ${result.reusedChunks} reused`,
    );
  }
  const after = results.find((result) => result.side === 'new');
  const before = results.find((result) => result.side === 'old');
  if (after !== undefined && before !== undefined) {
    const ratio = (a: number, b: number): string => (a / b).toFixed(3);
    console.log(
      `NEW/OLD: step peak ${ratio(stepPeak(after), stepPeak(before))}, over the start ${ratio(stepPeak(after) - after.rssAtStart, stepPeak(before) - before.rssAtStart)}; write phases (start writer + write disk) peak ${mib(Math.max(...after.phases.slice(2).map(peakOf)))} vs ${mib(Math.max(...before.phases.slice(2).map(peakOf)))} MiB`,
    );
  }
}

async function main(): Promise<void> {
  const side = option('side');
  if (side === 'new' || side === 'old' || side === 'list') {
    const root = option('root');
    const baseId = option('base');
    if (root === undefined || baseId === undefined) throw new Error('--root and --base go with --side');
    console.log(`${RESULT}${JSON.stringify(await measure(side, root, baseId))}`);
    return;
  }
  const root = await mkdtemp(join(tmpdir(), 'haven-bench-dense-base-'));
  try {
    const { baseId, seconds, files } = await fabricate(root);
    const runner =
      require.main?.filename.endsWith('precompiled.runner.js') === true ? 'precompiled' : 'bin/run.js';
    console.log(
      `incremental over a dense base: ${blocks} blocks of 2 MiB (${((blocks * BLOCK) / 2 ** 40).toFixed(2)} TiB), every one allocated, ${files} chunk files (empty), encrypted + zstd repository on a local remote, fabricated in ${seconds.toFixed(0)} s; ${changed} random full blocks changed; DiskIndex ${mib(blocks * ID)} MiB; each side in its own process (${launchedWith()}; ${runner}, Node ${process.version}; sampled every ${SAMPLE_MS} ms, VmHWM reset per phase)`,
    );
    const results: SideResult[] = [];
    for (const side of sides) results.push(await runSide(side, root, baseId));
    report(results);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

// As a transfer worker's entry point does, before anything starts an asynchronous call.
sizeThreadPoolForDataPath();
runBench(() => runAsLaunched(main));
