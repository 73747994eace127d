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

/**
 * Listings of first-level chunk folders (chunks/ab/) kept in flight: as many as an object store's
 * HEADs (OBJECT_STORE_STATS_IN_FLIGHT), so that 256 folders take four round trips.
 */
const LISTINGS_IN_FLIGHT = 64;

/** First-level chunk folders: chunk ids are hashes, spread evenly over chunks/00/ … chunks/ff/. */
const CHUNK_FOLDERS = 256;

/** What one list request returns at most (RemoteStore.list's page size). */
const LIST_PAGE = 1000;

/**
 * Which of `ids` (hex chunk ids) have no object in chunks/.
 *
 * On an object store (`features.flatListing`) every request is a round trip, HEADs and listings
 * alike, and a listing of a prefix returns up to 1,000 keys however deep they are nested. `auto`
 * first lists the folder (chunks/ab/) that holds the most ids: how many keys it has tells how
 * large the repository is (every VM and tenant it holds), since ids are hashes spread evenly.
 * Then, in round trips:
 * - a HEAD per id, 64 in flight, when a listing of every folder would need more requests than
 *   that (a dense repository: the probe stops as soon as it knows);
 * - else one listing of chunks/, page after page, when the repository is that small (the pages
 *   one after another cost no more round trips than the folders side by side);
 * - else a listing of each folder the ids fall in, 64 in flight.
 * For the 3,072 chunks of an 8 GiB base that is a handful of pages in a small repository, 256
 * listings in flight up to about 3 million chunks, HEADs beyond (docs/benchmarks/remotes.md,
 * "Existence checks a round trip away"). File systems list folder by folder, so there `auto`
 * lists only past PER_CHUNK_EXISTENCE_LIMIT ids.
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
  if (!probe.complete) {
    // Dense repository: HEADs for what the probe's pages did not show present.
    const unseen = new Set<string>();
    for (const id of ids) if (!probe.seen.has(id)) unseen.add(id);
    return missingOneByOne(store, unseen, operation);
  }
  const wholeListingPages = Math.ceil((probe.listed * CHUNK_FOLDERS) / LIST_PAGE);
  const folderListingRounds = Math.ceil((folders.length - 1) / LISTINGS_IN_FLIGHT) * probe.pages;
  if (wholeListingPages <= folderListingRounds) {
    const { seen } = await listWithin(store, CHUNKS_PREFIX, ids, Infinity, operation);
    return new Set([...ids].filter((id) => !seen.has(id)));
  }
  const rest = new Map(folders.slice(1).map((folder) => [folder, byFolder.get(folder) ?? []]));
  const missing = await missingByListing(store, rest, operation);
  for (const id of byFolder.get(probed) ?? []) if (!probe.seen.has(id)) missing.add(id);
  return missing;
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
 * `maxPages` pages were read and more remain; with the pages read and the keys they held. Only
 * the wanted ids are kept: a folder of a large repository lists thousands of other chunks.
 */
async function listWithin(
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
