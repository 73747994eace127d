// Memory of a repository's maintenance on a transfer worker (budget 256 MiB RSS): what garbage
// collection (mark + sweep) and verify hold per chunk, before (per-chunk JS objects: a Set of id
// strings, the listing as a Map of hex keys to objects, for verify a Set of strings per chunk
// naming its users) and now (SortedChunkIds, ChunkListing, typed arrays). Each side runs in a
// process of its own.
//   node --expose-gc bin/run.js bench/repository/maintenance-memory.bench.ts [--chunks 1000000] [--restore-points 10] [--fallback-chunks 200000]
//
// The synthetic repository: N distinct chunk ids (seeded pseudo-random bytes), R restore points,
// each one DiskIndex of N blocks mapping block n to id n (the same ids in every restore point: each
// id is referenced R times), and a listing of chunks/ holding those N ids plus N / 100 ids no
// restore point references (the garbage), in ascending order as a remote lists them. The indexes
// and the listing's ids are the input, built before the baseline and kept alive: what is measured
// is what the maintenance code builds from them. Listed keys are turned into hex (what a key gives)
// on both sides; the remote's own per-object cost is the same for both and left out.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import { ChunkListing, DiskIndex, newRestorePointId, SortedChunkIds } from '@haven/repository';
import { arg } from '../bench.kit';
import { MiB, SAMPLE_EVERY, Sampler, seededIds } from './memory.kit';

const BLOCK = 2 * MiB;
const ID = 32;
/** Heap limit given to an OLD side that ran out of memory with Node's default (the machine has 24 GiB). */
const LARGER_OLD_SPACE_MIB = 16_384;

const chunks = arg('chunks', 1_000_000);
const restorePoints = arg('restore-points', 10);
const fallbackChunks = arg('fallback-chunks', 200_000);
const sideAt = process.argv.indexOf('--side');
const side = sideAt < 0 ? '' : (process.argv[sideAt + 1] ?? '');

type Side = 'gc-old' | 'gc-new' | 'verify-old' | 'verify-new';
const SIDES: readonly Side[] = ['gc-old', 'gc-new', 'verify-old', 'verify-new'];

interface Result {
  which: Side;
  chunks: number;
  /** Peak of the sampled RSS above the baseline, MiB. */
  peakRssMiB: number;
  /** Peak of the sampled heapUsed + arrayBuffers above the baseline (garbage not yet collected included), MiB. */
  peakHeapMiB: number;
  /** heapUsed + arrayBuffers above the baseline after a forced collection, the structures still reachable, MiB. */
  keptMiB: number;
  buildMs: number;
  /** Of which the mark (GC) or the reading of the indexes (verify). */
  markMs: number;
  /** GC: garbage found; verify: chunks to check. */
  count: number;
  /** Characters of one OLD verify user string. */
  userChars?: number;
  heapLimitMiB: number;
}

interface Input {
  indexes: DiskIndex[];
  pointIds: string[];
  /** The listing's ids in ascending order, 32 bytes each. */
  listed: Buffer;
  listedCount: number;
  garbageCount: number;
}

function input(count: number): Input {
  const garbageCount = Math.floor(count / 100);
  const ids = seededIds(count + garbageCount, 12);
  const indexes: DiskIndex[] = [];
  const pointIds: string[] = [];
  for (let point = 0; point < restorePoints; point++) {
    const index = new DiskIndex(count * BLOCK, BLOCK);
    for (let block = 0; block < count; block++) index.set(block, ids.subarray(block * ID, (block + 1) * ID));
    indexes.push(index);
    pointIds.push(newRestorePointId(new Date(Date.UTC(2026, 11, 1 + point, 22, 0, 0, 0))));
  }
  // Ascending order, as a remote lists chunks/ (sorted here by the new structure: input only).
  const sorted = new SortedChunkIds();
  for (let n = 0; n < count + garbageCount; n++) sorted.addFrom(ids, n * ID);
  const listed = Buffer.allocUnsafe(sorted.size * ID);
  let position = 0;
  for (const id of sorted) id.copy(listed, ID * position++);
  return { indexes, pointIds, listed, listedCount: position, garbageCount };
}

/** Listed objects' size and time (all older than the GC's window). */
const SIZE = BLOCK + 64;
const MODIFIED = Date.UTC(2026, 10, 1);
const CUTOFF = Date.UTC(2026, 11, 1);

/** ChunkStore.list as it was: a Map of the whole listing, hex keys to sizes and dates. */
function oldListing(
  data: Input,
  sampler: Sampler,
  ticks: number,
): Map<string, { size: number; modifiedAt: Date }> {
  const listing = new Map<string, { size: number; modifiedAt: Date }>();
  for (let at = 0; at < data.listedCount; at++) {
    listing.set(data.listed.toString('hex', at * ID, (at + 1) * ID), {
      size: SIZE,
      modifiedAt: new Date(MODIFIED),
    });
    sampler.tick(ticks + at + 1);
  }
  sampler.sample();
  return listing;
}

function gcOld(data: Input, sampler: Sampler): { count: number; keep: unknown[] } {
  // Mark (as before): a Set of latin1 id strings, one add per reference.
  const referenced = new Set<string>();
  let n = 0;
  for (const index of data.indexes)
    for (const chunk of index.chunkIds()) {
      referenced.add(chunk.toString('latin1'));
      sampler.tick(++n);
    }
  sampler.marked();
  // Sweep (as before): ChunkStore.list's Map of the whole listing, then a filter.
  const listing = oldListing(data, sampler, n);
  const key = (hex: string): string => Buffer.from(hex, 'hex').toString('latin1');
  const garbage = [...listing]
    .filter(([hex, info]) => !referenced.has(key(hex)) && info.modifiedAt.getTime() < CUTOFF)
    .map(([hex]) => hex);
  sampler.sample();
  return { count: garbage.length, keep: [referenced, listing, garbage] };
}

/** The mark as GC and verify do it now: every index's ids, once each. The references counted. */
function markNew(data: Input, sampler: Sampler): { referenced: SortedChunkIds; n: number } {
  const referenced = new SortedChunkIds();
  let n = 0;
  for (const index of data.indexes)
    index.forEachChunkId((records, offset) => {
      referenced.addFrom(records, offset);
      sampler.tick(++n);
    });
  sampler.marked();
  return { referenced, n };
}

function gcNew(data: Input, sampler: Sampler): { count: number; keep: unknown[] } {
  const marked = markNew(data, sampler);
  const referenced = marked.referenced;
  let n = marked.n;
  // Sweep: the listing as it comes (ChunkStore.objects: an id and a Date per object, none kept).
  const garbage = new SortedChunkIds();
  for (let at = 0; at < data.listedCount; at++) {
    const chunk = {
      id: Buffer.from(data.listed.toString('hex', at * ID, (at + 1) * ID), 'hex'),
      size: SIZE,
      modifiedAt: new Date(MODIFIED),
    };
    if (chunk.modifiedAt.getTime() < CUTOFF && !referenced.has(chunk.id)) garbage.add(chunk.id);
    sampler.tick(++n);
  }
  return { count: garbage.size, keep: [referenced, garbage] };
}

const label = (pointId: string, at: number): string =>
  `vm-${String(at).padStart(2, '0')} @ ${new Date(Date.UTC(2026, 11, 1 + at, 22)).toISOString()} (${pointId})`;
const VM_UUID = '6f1c7a52-3d4e-4b8a-9c0d-2e5f7a8b9c01';

function verifyOld(data: Input, sampler: Sampler): { count: number; keep: unknown[]; userChars: number } {
  // Referenced (as before): per chunk, a Set of "restore point id, label, VM" strings, one made per reference.
  const users = new Map<string, Set<string>>();
  let n = 0;
  for (const [at, index] of data.indexes.entries()) {
    const id = data.pointIds[at] ?? '';
    const name = label(id, at);
    for (const chunk of index.chunkIds()) {
      const hex = chunk.toString('hex');
      let set = users.get(hex);
      if (set === undefined) users.set(hex, (set = new Set()));
      set.add(`${id}\u0000${name}\u0000${VM_UUID}`);
      sampler.tick(++n);
    }
  }
  sampler.marked();
  const stored = oldListing(data, sampler, n);
  // Presence, then the chunks to re-read (a whole-repository verify: every listed chunk).
  const absent = [...users.keys()].filter((hex) => !stored.has(hex));
  sampler.sample();
  const toCheck = [...stored.keys()];
  sampler.sample();
  const userChars = `${data.pointIds[0]}\u0000${label(data.pointIds[0] ?? '', 0)}\u0000${VM_UUID}`.length;
  return { count: toCheck.length + absent.length, keep: [users, stored, absent, toCheck], userChars };
}

function verifyNew(data: Input, sampler: Sampler): { count: number; keep: unknown[] } {
  const marked = markNew(data, sampler);
  const referenced = marked.referenced;
  let n = marked.n;
  // ChunkStore.listing: each listed object arrives as an id and a Date (ChunkStore.objects).
  const stored = new ChunkListing('bench');
  for (let at = 0; at < data.listedCount; at++) {
    stored.add(
      Buffer.from(data.listed.toString('hex', at * ID, (at + 1) * ID), 'hex'),
      SIZE,
      new Date(MODIFIED),
    );
    sampler.tick(++n);
  }
  sampler.sample();
  const absent: number[] = [];
  let position = 0;
  for (const id of referenced) {
    if (!stored.has(id)) absent.push(position);
    position++;
  }
  const toCheck = new Uint32Array(stored.size);
  for (let listed = 0; listed < stored.size; listed++) toCheck[listed] = listed;
  sampler.sample();
  return { count: toCheck.length + absent.length, keep: [referenced, stored, absent, toCheck] };
}

async function measure(which: Side): Promise<void> {
  const data = input(chunks);
  const sampler = await Sampler.start();
  const started = performance.now();
  const built =
    which === 'gc-old'
      ? gcOld(data, sampler)
      : which === 'gc-new'
        ? gcNew(data, sampler)
        : which === 'verify-old'
          ? verifyOld(data, sampler)
          : verifyNew(data, sampler);
  const buildMs = performance.now() - started;
  const markMs = sampler.markedAt - started;
  sampler.sample();
  const kept = await sampler.kept();
  // The structures stay reachable until here.
  if (built.keep.length === 0) throw new Error('nothing kept');
  const expected = which.startsWith('gc') ? data.garbageCount : data.listedCount;
  if (built.count !== expected) throw new Error(`${which}: counted ${built.count}, expected ${expected}`);
  const result: Result = {
    which,
    chunks,
    ...sampler.result(),
    keptMiB: kept / MiB,
    buildMs,
    markMs,
    count: built.count,
    heapLimitMiB: getHeapStatistics().heap_size_limit / MiB,
    ...('userChars' in built ? { userChars: built.userChars as number } : {}),
  };
  console.log(JSON.stringify(result));
}

type Outcome = (Result & { oldSpaceMiB?: number }) | { outOfMemory: true; triedMiB: number[] };

function run(which: Side, count: number): Outcome {
  const limits: (number | undefined)[] = which.endsWith('old')
    ? [undefined, LARGER_OLD_SPACE_MIB]
    : [undefined];
  const tried: number[] = [];
  for (const limit of limits) {
    const child = spawnSync(
      process.execPath,
      [
        ...process.execArgv,
        ...(limit === undefined ? [] : [`--max-old-space-size=${limit}`]),
        join(__dirname, '../../bin/run.js'),
        __filename,
        '--chunks',
        String(count),
        '--restore-points',
        String(restorePoints),
        '--side',
        which,
      ],
      { encoding: 'utf8', maxBuffer: 64 * MiB },
    );
    if (child.status === 0) {
      const result = JSON.parse(child.stdout.trim()) as Result;
      return limit === undefined ? result : { ...result, oldSpaceMiB: limit };
    }
    const outOfMemory =
      /out of memory|allocation failed/i.test(child.stderr) ||
      child.signal === 'SIGKILL' ||
      child.signal === 'SIGABRT';
    if (!outOfMemory) throw new Error(`${which} failed (${child.status ?? child.signal}): ${child.stderr}`);
    tried.push(limit ?? Math.round(getHeapStatistics().heap_size_limit / MiB));
  }
  return { outOfMemory: true, triedMiB: tried };
}

const f0 = (value: number): string => value.toFixed(0);
const ratio = (after: number, before: number): string => (after / before).toFixed(3);

function line(title: string, outcome: Outcome, count: number): string {
  if ('outOfMemory' in outcome)
    return `  ${title} out of memory at N=${count} (heap limits tried: ${outcome.triedMiB.join(', ')} MiB)`;
  const limit =
    outcome.oldSpaceMiB === undefined ? '' : ` (run with --max-old-space-size=${outcome.oldSpaceMiB})`;
  return `  ${title} peak RSS +${f0(outcome.peakRssMiB)} MiB, peak heap+buffers +${f0(outcome.peakHeapMiB)} MiB, kept after gc ${f0(outcome.keptMiB)} MiB, built in ${f0(outcome.buildMs)} ms (mark ${f0(outcome.markMs)} ms)${limit}`;
}

function compare(task: 'gc' | 'verify', count: number): boolean {
  const before = run(`${task}-old`, count);
  const after = run(`${task}-new`, count);
  const titles =
    task === 'gc'
      ? ['OLD Set<latin1> + listing Map + garbage[]:', 'NEW SortedChunkIds + streamed listing:     ']
      : ['OLD users Map<hex,Set> + listing Map + []:', 'NEW SortedChunkIds + ChunkListing + u32[]:'];
  const garbage = Math.floor(count / 100);
  console.log(
    task === 'gc'
      ? `GC mark + sweep, N=${count} chunks x ${restorePoints} restore points, ${garbage} more listed unreferenced:`
      : `verify (referenced, listing, chunks to check), N=${count} chunks x ${restorePoints} restore points, ${garbage} more listed:`,
  );
  console.log(line(titles[0] ?? '', before, count));
  console.log(line(titles[1] ?? '', after, count));
  if ('outOfMemory' in before || 'outOfMemory' in after) {
    console.log(`  ${'outOfMemory' in before ? 'OLD' : 'NEW'}: out of memory at N=${count}`);
    return false;
  }
  const same = before.count === after.count;
  const perMillion = (mib: number): string => f0((mib * 1e6) / count);
  console.log(
    `  NEW/OLD: peak RSS ${ratio(after.peakRssMiB, before.peakRssMiB)}, peak heap+buffers ${ratio(after.peakHeapMiB, before.peakHeapMiB)}, kept ${ratio(after.keptMiB, before.keptMiB)}, time ${ratio(after.buildMs, before.buildMs)}; per million chunks (kept / peak heap+buffers): OLD ${perMillion(before.keptMiB)} / ${perMillion(before.peakHeapMiB)} MiB, NEW ${perMillion(after.keptMiB)} / ${perMillion(after.peakHeapMiB)} MiB; ${task === 'gc' ? 'same garbage count' : 'same chunks to check'}: ${same} (${after.count})${before.userChars === undefined ? '' : `; a user string ${before.userChars} chars`}`,
  );
  return true;
}

if ((SIDES as readonly string[]).includes(side)) {
  measure(side as Side).catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
} else {
  console.log(
    `maintenance memory, each side in its own process (Node ${process.version}, default heap limit ${f0(getHeapStatistics().heap_size_limit / MiB)} MiB; sampled every ${SAMPLE_EVERY} items and after a forced gc; above each child's baseline of inputs: ${restorePoints} disk indexes + the listing's ids):`,
  );
  for (const task of ['gc', 'verify'] as const)
    if (!compare(task, chunks) && fallbackChunks < chunks) compare(task, fallbackChunks);
}
