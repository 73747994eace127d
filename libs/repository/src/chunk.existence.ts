import type { OperationOptions, RemoteStore } from '@haven/remote-sdk';
import { mapConcurrent } from './concurrency';
import { CHUNKS_PREFIX, chunkIdOfKey, chunkKey } from './format/repository.layout';

/**
 * How the existence of many chunks is checked: one stat (an object store's HEAD) per chunk, or
 * listings of the chunk folders that hold them; `auto` picks the one that costs fewer requests.
 */
export type ChunkExistenceMethod = 'auto' | 'per-chunk' | 'listing';

/**
 * On a file system, `auto` checks up to this many chunks one by one (4,096 chunks: 8 GiB of
 * data). A stat there is a local call, and a listing walks every folder under chunks/ whatever
 * the chunks asked about.
 */
export const PER_CHUNK_EXISTENCE_LIMIT = 4096;

/** Listings of first-level chunk folders (chunks/ab/) kept in flight. */
const LISTINGS_IN_FLIGHT = 32;

/** What one list request returns at most (RemoteStore.list's page size). */
const LIST_PAGE = 1000;

/**
 * Which of `ids` (hex chunk ids) have no object in chunks/.
 *
 * On an object store (`features.flatListing`) every request is a round trip, and a listing of
 * chunks/ab/ returns up to 1,000 keys per request however deep they are nested; so `auto` lists
 * the first-level folders the ids fall in when that takes fewer requests than one HEAD per id.
 * How many pages a folder takes is not known beforehand (it grows with everything the repository
 * holds, every VM and tenant): `auto` first lists the folder holding the most ids, page by page,
 * and gives up on listings as soon as they would cost as many requests as the HEADs. For the
 * 3,072 chunks of an 8 GiB base, that is 256 one-page listings instead of 3,072 HEADs in a
 * repository of up to 256,000 chunks (500 GiB of 2 MiB blocks), and listings still win up to 12
 * pages per folder (about 3 million chunks); see docs/benchmarks/remotes.md, "Existence checks a
 * round trip away". File systems list folder by folder, so there `auto` lists only past
 * PER_CHUNK_EXISTENCE_LIMIT ids.
 *
 * A listing is a snapshot like a HEAD: chunks written meanwhile may or may not be seen.
 */
export async function missingChunks(
  store: RemoteStore,
  ids: ReadonlySet<string>,
  options: OperationOptions & { method?: ChunkExistenceMethod } = {},
): Promise<Set<string>> {
  const method = options.method ?? 'auto';
  const operation = options.signal !== undefined ? { signal: options.signal } : {};
  if (ids.size === 0) return new Set();
  const byFolder = groupByFolder(ids);
  if (method === 'per-chunk') return missingOneByOne(store, ids, operation);
  if (method === 'listing') return missingByListing(store, byFolder, operation);
  if (store.features?.flatListing !== true) {
    return ids.size <= PER_CHUNK_EXISTENCE_LIMIT
      ? missingOneByOne(store, ids, operation)
      : missingByListing(store, byFolder, operation);
  }
  // With an id or less per folder, a listing per folder cannot beat a HEAD per id.
  if (byFolder.size >= ids.size) return missingOneByOne(store, ids, operation);

  const folders = [...byFolder.keys()].sort(
    (a, b) => (byFolder.get(b)?.length ?? 0) - (byFolder.get(a)?.length ?? 0),
  );
  const probed = folders[0];
  // Listings win while a folder takes at most this many pages (a request each).
  const pagesWorthListing = Math.floor(ids.size / byFolder.size);
  const probe = await listWithin(store, probed, new Set(byFolder.get(probed)), pagesWorthListing, operation);
  if (probe.complete) {
    const rest = new Map(folders.slice(1).map((folder) => [folder, byFolder.get(folder) ?? []]));
    const missing = await missingByListing(store, rest, operation);
    for (const id of byFolder.get(probed) ?? []) if (!probe.seen.has(id)) missing.add(id);
    return missing;
  }
  // Dense repository: HEADs for what the probe's pages did not show present.
  const unseen = new Set<string>();
  for (const id of ids) if (!probe.seen.has(id)) unseen.add(id);
  return missingOneByOne(store, unseen, operation);
}

/** 'chunks/ab/' → the ids in it. */
function groupByFolder(ids: ReadonlySet<string>): Map<string, string[]> {
  const byFolder = new Map<string, string[]>();
  for (const id of ids) {
    const folder = `${CHUNKS_PREFIX}${id.slice(0, 2)}/`;
    const inFolder = byFolder.get(folder);
    if (inFolder === undefined) byFolder.set(folder, [id]);
    else inFolder.push(id);
  }
  return byFolder;
}

async function missingOneByOne(
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

async function missingByListing(
  store: RemoteStore,
  byFolder: ReadonlyMap<string, readonly string[]>,
  operation: OperationOptions,
): Promise<Set<string>> {
  const missing = new Set<string>();
  await mapConcurrent([...byFolder.entries()], LISTINGS_IN_FLIGHT, async ([folder, inFolder]) => {
    const { seen } = await listWithin(store, folder, new Set(inFolder), Infinity, operation);
    for (const id of inFolder) if (!seen.has(id)) missing.add(id);
  });
  return missing;
}

/**
 * Which of `wanted` are listed under `folder`, page by page, stopping (incomplete) once
 * `maxPages` pages were read and more remain. Only the wanted ids are kept: a folder of a large
 * repository lists thousands of other chunks.
 */
async function listWithin(
  store: RemoteStore,
  folder: string,
  wanted: ReadonlySet<string>,
  maxPages: number,
  operation: OperationOptions,
): Promise<{ seen: Set<string>; complete: boolean }> {
  const seen = new Set<string>();
  let cursor: string | undefined;
  let pages = 0;
  do {
    if (pages >= maxPages) return { seen, complete: false };
    const page = await store.list(folder, {
      ...operation,
      limit: LIST_PAGE,
      ...(cursor !== undefined ? { cursor } : {}),
    });
    pages++;
    for (const object of page.objects) {
      const id = chunkIdOfKey(object.key);
      if (id !== undefined && wanted.has(id)) seen.add(id);
    }
    cursor = page.cursor;
  } while (cursor !== undefined);
  return { seen, complete: true };
}
