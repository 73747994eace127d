// Memory of an incremental's `existence` check of its base (missingChunks) on a transfer worker
// (budget 256 MiB RSS), for a dense base of a million chunks (a 2 TiB disk of 2 MiB chunks): before,
// a Set of hex ids built from the base's SortedChunkIds, grouped by folder into arrays of strings,
// a Set of wanted ids per folder listing, or every chunk's key string at once for the stats; now,
// the SortedChunkIds itself, a byte per id for what was found, the keys of 4,096 stats at a time.
// Each side runs in a process of its own, once for each way of asking.
//   node --expose-gc bin/run.js bench/repository/existence-memory.bench.ts [--chunks 1000000] [--methods auto,per-chunk]
//
// The repository: a local file-system remote holding the N chunks (seeded pseudo-random ids) as
// empty files at their keys (what is measured is the number of objects: listings and stats do not
// read them), but for ten of them (one in 100,000), absent. On a file system `auto` lists each
// chunk folder past PER_CHUNK_EXISTENCE_LIMIT ids; `per-chunk` is what an object store does with a
// dense repository (a HEAD per id). The base's SortedChunkIds is the input of both sides, built before the baseline:
// what is measured is what the check builds from it (the old side's hex Set included, as the old
// inspectBase built it for the check).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { OperationOptions, RemoteStore } from '@haven/remote-sdk';
import localRemote from '@haven/remote-local';
import {
  CHUNKS_PREFIX,
  type ChunkExistenceMethod,
  chunkIdOfKey,
  chunkKey,
  missingChunks,
  PER_CHUNK_EXISTENCE_LIMIT,
  SortedChunkIds,
} from '@haven/repository';
import { arg, runBench } from '../bench.kit';
import { MiB, runSideProcess, Sampler, seededIds, writeEmptyChunks } from './memory.kit';

const ID = 32;
/** The check is async: memory is sampled on a timer too, this often. */
const SAMPLE_MS = 5;

const chunks = arg('chunks', 1_000_000);
const option = (name: string): string | undefined => {
  const at = process.argv.indexOf(`--${name}`);
  return at < 0 ? undefined : process.argv[at + 1];
};
const methods = (option('methods') ?? 'auto,per-chunk').split(',') as ChunkExistenceMethod[];

/** One id in this many (ten in all) is absent from the repository. */
const absentEvery = Math.max(2, Math.floor(chunks / 10));
const isAbsent = (n: number): boolean => n % absentEvery === absentEvery >>> 1;

// ---- The baseline: missingChunks as it was (hex ids in a Set), kept here only to measure it. ----

const LISTINGS_IN_FLIGHT = 64;
const CHUNK_FOLDERS = 256;
const LIST_PAGE = 1000;

/** mapConcurrent of @haven/repository (not exported): at most `limit` calls in flight. */
async function inFlight<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      for (let index = next++; index < items.length; index = next++) await fn(items[index]);
    }),
  );
}

async function oldMissingChunks(
  store: RemoteStore,
  ids: ReadonlySet<string>,
  options: OperationOptions & { method?: ChunkExistenceMethod } = {},
): Promise<Set<string>> {
  const method = options.method ?? 'auto';
  const operation = options.signal !== undefined ? { signal: options.signal } : {};
  if (ids.size === 0) return new Set();
  const byFolder = oldGroupByFolder(ids);
  if (method === 'per-chunk') return oldMissingOneByOne(store, ids, operation);
  if (method === 'listing') return oldMissingByListing(store, byFolder, operation);
  if (store.features?.flatListing !== true) {
    return ids.size <= PER_CHUNK_EXISTENCE_LIMIT
      ? oldMissingOneByOne(store, ids, operation)
      : oldMissingByListing(store, byFolder, operation);
  }
  if (byFolder.size >= ids.size) return oldMissingOneByOne(store, ids, operation);
  const folders = [...byFolder.keys()].sort(
    (a, b) => (byFolder.get(b)?.length ?? 0) - (byFolder.get(a)?.length ?? 0),
  );
  const probed = folders[0];
  const pagesWorthListing = Math.floor(ids.size / byFolder.size);
  const probe = await oldListWithin(
    store,
    probed,
    new Set(byFolder.get(probed)),
    pagesWorthListing,
    operation,
  );
  if (!probe.complete) {
    const unseen = new Set<string>();
    for (const id of ids) if (!probe.seen.has(id)) unseen.add(id);
    return oldMissingOneByOne(store, unseen, operation);
  }
  const wholeListingPages = Math.ceil((probe.listed * CHUNK_FOLDERS) / LIST_PAGE);
  const folderListingRounds = Math.ceil((folders.length - 1) / LISTINGS_IN_FLIGHT) * probe.pages;
  if (wholeListingPages <= folderListingRounds) {
    const { seen } = await oldListWithin(store, CHUNKS_PREFIX, ids, Infinity, operation);
    return new Set([...ids].filter((id) => !seen.has(id)));
  }
  const rest = new Map(folders.slice(1).map((folder) => [folder, byFolder.get(folder) ?? []]));
  const missing = await oldMissingByListing(store, rest, operation);
  for (const id of byFolder.get(probed) ?? []) if (!probe.seen.has(id)) missing.add(id);
  return missing;
}

function oldGroupByFolder(ids: ReadonlySet<string>): Map<string, string[]> {
  const byFolder = new Map<string, string[]>();
  for (const id of ids) {
    const folder = `${CHUNKS_PREFIX}${id.slice(0, 2)}/`;
    const inFolder = byFolder.get(folder);
    if (inFolder === undefined) byFolder.set(folder, [id]);
    else inFolder.push(id);
  }
  return byFolder;
}

async function oldMissingOneByOne(
  store: RemoteStore,
  ids: ReadonlySet<string>,
  operation: OperationOptions,
): Promise<Set<string>> {
  const absentKeys = await store.missing(
    [...ids].map((id) => chunkKey(id)),
    operation,
  );
  const missing = new Set<string>();
  for (const id of ids) if (absentKeys.has(chunkKey(id))) missing.add(id);
  return missing;
}

async function oldMissingByListing(
  store: RemoteStore,
  byFolder: ReadonlyMap<string, readonly string[]>,
  operation: OperationOptions,
): Promise<Set<string>> {
  const missing = new Set<string>();
  await inFlight([...byFolder.entries()], LISTINGS_IN_FLIGHT, async ([folder, inFolder]) => {
    const { seen } = await oldListWithin(store, folder, new Set(inFolder), Infinity, operation);
    for (const id of inFolder) if (!seen.has(id)) missing.add(id);
  });
  return missing;
}

async function oldListWithin(
  store: RemoteStore,
  folder: string,
  wanted: ReadonlySet<string>,
  maxPages: number,
  operation: OperationOptions,
): Promise<{ seen: Set<string>; complete: boolean; pages: number; listed: number }> {
  const seen = new Set<string>();
  let cursor: string | undefined;
  let pages = 0;
  let listed = 0;
  do {
    if (pages >= maxPages) return { seen, complete: false, pages, listed };
    const page = await store.list(folder, {
      ...operation,
      limit: LIST_PAGE,
      ...(cursor !== undefined ? { cursor } : {}),
    });
    pages++;
    listed += page.objects.length;
    for (const object of page.objects) {
      const id = chunkIdOfKey(object.key);
      if (id !== undefined && wanted.has(id)) seen.add(id);
    }
    cursor = page.cursor;
  } while (cursor !== undefined);
  return { seen, complete: true, pages, listed };
}

// ---- One side, in a process of its own. ----

interface Result {
  side: 'old' | 'new';
  method: ChunkExistenceMethod;
  /** Peak of the sampled RSS above the baseline, MiB. */
  peakRssMiB: number;
  /** Peak of the sampled heapUsed + arrayBuffers above the baseline, MiB. */
  peakHeapMiB: number;
  /** heapUsed + arrayBuffers above the baseline after a forced collection, what the caller still holds, MiB. */
  keptMiB: number;
  ms: number;
  missing: number;
}

/**
 * The input: the base's ids, as inspectBase holds them (a disk index's records added one by one),
 * merged. The seeded bytes they came from are garbage before the baseline.
 */
function baseIds(): SortedChunkIds {
  const records = seededIds(chunks, 7);
  const base = new SortedChunkIds();
  for (let n = 0; n < chunks; n++) base.addFrom(records, n * ID);
  base.idAt(0);
  return base;
}

async function measure(side: 'old' | 'new', method: ChunkExistenceMethod, root: string): Promise<void> {
  const store = await localRemote.create({ path: root }, { name: 'bench' });
  const base = baseIds();

  const sampler = await Sampler.start();
  const timer = setInterval(() => sampler.sample(), SAMPLE_MS);
  const started = performance.now();
  let missing: number;
  let keep: unknown[];
  if (side === 'old') {
    // As inspectBase built it for the check, and held it until it returned.
    const referenced = new Set<string>();
    let n = 0;
    for (const id of base) {
      referenced.add(id.toString('hex'));
      sampler.tick(++n);
    }
    const absent = await oldMissingChunks(store, referenced, { method });
    missing = absent.size;
    keep = [referenced, absent];
  } else {
    const absent = await missingChunks(store, base, { method });
    missing = absent.size;
    keep = [absent];
  }
  const ms = performance.now() - started;
  clearInterval(timer);
  sampler.sample();
  const kept = await sampler.kept();
  if (keep.length === 0) throw new Error('nothing kept');
  let expected = 0;
  for (let n = 0; n < chunks; n++) if (isAbsent(n)) expected++;
  if (missing !== expected) throw new Error(`${side} ${method}: ${missing} missing, expected ${expected}`);
  await store.close();
  const result: Result = { side, method, ...sampler.result(), keptMiB: kept / MiB, ms, missing };
  console.log(JSON.stringify(result));
}

// ---- The parent: the repository, then each side in a child. ----

/** The chunks as empty files at their keys, but the absent ones (the local remote's layout). */
function fakeRepository(root: string): number {
  return writeEmptyChunks(root, seededIds(chunks, 7), chunks, isAbsent);
}

function run(side: 'old' | 'new', method: ChunkExistenceMethod, root: string): Result {
  return runSideProcess<Result>(__filename, [
    '--chunks',
    String(chunks),
    '--side',
    side,
    '--method',
    method,
    '--root',
    root,
  ]);
}

const f0 = (value: number): string => value.toFixed(0);

function line(title: string, result: Result): string {
  return `  ${title} peak RSS +${f0(result.peakRssMiB)} MiB, peak heap+buffers +${f0(result.peakHeapMiB)} MiB, kept after gc ${result.keptMiB.toFixed(1)} MiB, ${(result.ms / 1000).toFixed(1)} s, ${result.missing} missing`;
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'haven-bench-existence-'));
  try {
    const started = performance.now();
    const written = fakeRepository(root);
    console.log(
      `existence check of a base of ${chunks} chunks on a local remote holding ${written} of them (${chunks - written} absent; written in ${((performance.now() - started) / 1000).toFixed(0)} s), each side in its own process (Node ${process.version}; sampled every ${SAMPLE_MS} ms and after a forced gc, above each child's baseline of the base's SortedChunkIds):`,
    );
    for (const method of methods) {
      const before = run('old', method, root);
      const after = run('new', method, root);
      console.log(`method ${method}:`);
      console.log(line('OLD Set<hex> + per-folder arrays/Sets:', before));
      console.log(line('NEW SortedChunkIds + found bytes:     ', after));
      const ratio = (a: number, b: number): string => (a / b).toFixed(3);
      console.log(
        `  NEW/OLD: peak RSS ${ratio(after.peakRssMiB, before.peakRssMiB)}, peak heap+buffers ${ratio(after.peakHeapMiB, before.peakHeapMiB)}, kept ${ratio(after.keptMiB, before.keptMiB)}, time ${ratio(after.ms, before.ms)}; same answer: ${after.missing === before.missing}`,
      );
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

const side = option('side');
if (side === 'old' || side === 'new') {
  const root = option('root');
  const method = (option('method') ?? 'auto') as ChunkExistenceMethod;
  if (root === undefined) throw new Error('--root is needed with --side');
  runBench(() => measure(side, method, root));
} else {
  runBench(main);
}
