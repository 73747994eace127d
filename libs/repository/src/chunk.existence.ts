import type { OperationOptions, RemoteStore } from '@haven/remote-sdk';
import { mapConcurrent } from './concurrency';
import { CHUNKS_PREFIX, chunkIdOfKey, chunkKey } from './format/repository.layout';
import { SortedChunkIds } from './sorted-chunk-ids';

/**
 * How the existence of many chunks is checked: one stat (an object store's HEAD) per chunk, or
 * listings of the chunk folders that hold them; `auto` picks the one that costs fewer requests.
 */
export type ChunkExistenceMethod = 'auto' | 'per-chunk' | 'listing';

/**
 * On a file system whose listing does not stat each object (NFS and SMB remotes: their directory
 * reads carry sizes and dates), `auto` checks up to this many chunks one by one (4,096 chunks: 8
 * GiB of data), and lists past it: a listing walks every folder under chunks/ whatever the chunks
 * asked about.
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
 * Keys handed to RemoteStore.missing at once when chunks are checked one by one (it stats them
 * its own statsInFlight at a time): a million ids never become a million key strings at once.
 * 256 left more garbage in the incremental's inspection of a dense 2 TiB base, not less
 * (docs/benchmarks/jobs.md, "Dense 2 TiB base").
 */
export const PER_CHUNK_EXISTENCE_BATCH = 4096;

export interface ChunkExistenceOptions extends OperationOptions {
  method?: ChunkExistenceMethod;
  /** Keys per RemoteStore.missing call when checking one by one (PER_CHUNK_EXISTENCE_BATCH). */
  perChunkBatch?: number;
}

/**
 * Which of `ids` have no object in chunks/.
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
 * lists only past PER_CHUNK_EXISTENCE_LIMIT ids, and never where a listing stats each object
 * (`features.listingStatsEachObject`: a local disk, an NFS mount).
 *
 * The ids stay 32-byte records: those of folder chunks/ab/ are one run of positions in `ids`
 * (sorted by bytes), what was found is a byte per position, and HEADs go PER_CHUNK_EXISTENCE_BATCH
 * keys at a time; a listed key is looked up in `ids`, no set of wanted strings is built. At a
 * million ids that is 1 MiB beside `ids`, not 100 MiB of strings (docs/benchmarks/repository.md,
 * "Existence check memory"). The answer is a set of its own, usually empty.
 *
 * A listing is a snapshot like a HEAD: chunks written meanwhile may or may not be seen.
 */
export async function missingChunks(
  store: RemoteStore,
  ids: SortedChunkIds,
  options: ChunkExistenceOptions = {},
): Promise<SortedChunkIds> {
  const method = options.method ?? 'auto';
  const operation = options.signal !== undefined ? { signal: options.signal } : {};
  const batch = Math.max(1, Math.floor(options.perChunkBatch ?? PER_CHUNK_EXISTENCE_BATCH));
  const check = new Check(store, ids, operation);
  if (ids.size === 0) return check.missing();
  if (checksOneByOne(store, ids.size, method)) return (await check.oneByOne(batch)).missing();
  const folders = foldersOf(ids);
  if (method === 'listing' || store.features?.flatListing !== true)
    return (await check.byListing(folders)).missing();
  // With an id or less per folder, a listing per folder cannot beat a HEAD per id.
  if (folders.length >= ids.size) return (await check.oneByOne(batch)).missing();

  // The fullest folder first (of equals, the lowest).
  folders.sort((a, b) => b.end - b.start - (a.end - a.start) || a.byte - b.byte);
  const probed = folders[0];
  // Listings win while a folder takes at most this many pages (a request each).
  const pagesWorthListing = Math.floor(ids.size / folders.length);
  const probe = await check.listWithin(folderPrefix(probed.byte), probed, pagesWorthListing);
  // Dense repository: HEADs for what the probe's pages did not show present.
  if (!probe.complete) return (await check.oneByOne(batch)).missing();
  const wholeListingPages = Math.ceil((probe.listed * CHUNK_FOLDERS) / LIST_PAGE);
  const folderListingRounds = Math.ceil((folders.length - 1) / LISTINGS_IN_FLIGHT) * probe.pages;
  if (wholeListingPages <= folderListingRounds) {
    // As its own snapshot: what the probe saw is listed again.
    check.forget();
    await check.listWithin(CHUNKS_PREFIX, { byte: -1, start: 0, end: ids.size }, Infinity);
    return check.missing();
  }
  return (await check.byListing(folders.slice(1))).missing();
}

/**
 * Whether missingChunks checks `count` ids on `store` one by one whatever ids they are: asked to, or
 * a file system remote (no flat listing) with few ids or whose listing stats every object. A
 * listing that stats every object is never cheaper than stats of the ids asked about, and its
 * pages of objects, a million for a dense 2 TiB base, were hundreds of MiB of garbage
 * (docs/benchmarks/jobs.md, "Dense 2 TiB base"). Then the ids need not be one sorted set: they
 * can be checked a slice at a time (ChunkStore.missingAmongIndexes).
 */
export function checksOneByOne(store: RemoteStore, count: number, method: ChunkExistenceMethod): boolean {
  if (method !== 'auto') return method === 'per-chunk';
  return (
    store.features?.flatListing !== true &&
    (count <= PER_CHUNK_EXISTENCE_LIMIT || store.features?.listingStatsEachObject === true)
  );
}

/** The ids of folder chunks/<byte>/: positions `start` to `end` (exclusive) of the ids. */
interface Folder {
  byte: number;
  start: number;
  end: number;
}

/** The folders the ids fall in, in key order. */
function foldersOf(ids: SortedChunkIds): Folder[] {
  const folders: Folder[] = [];
  for (let byte = 0; byte < CHUNK_FOLDERS; byte++) {
    const { start, end } = ids.positionsWithFirstByte(byte);
    if (end > start) folders.push({ byte, start, end });
  }
  return folders;
}

/** 0xab → 'chunks/ab/'. */
function folderPrefix(byte: number): string {
  return `${CHUNKS_PREFIX}${byte.toString(16).padStart(2, '0')}/`;
}

/** One existence check: which positions of `ids` were found stored, a byte each. */
class Check {
  private readonly found: Uint8Array;

  constructor(
    private readonly store: RemoteStore,
    private readonly ids: SortedChunkIds,
    private readonly operation: OperationOptions,
  ) {
    this.found = new Uint8Array(ids.size);
  }

  /** Nothing found so far. */
  forget(): void {
    this.found.fill(0);
  }

  /** The ids not found (so far). */
  missing(): SortedChunkIds {
    const missing = new SortedChunkIds();
    for (let position = 0; position < this.found.length; position++)
      if (this.found[position] === 0) missing.appendAscending(this.ids.idAt(position));
    return missing;
  }

  /** A stat (HEAD) of each id not found yet, `batch` keys to RemoteStore.missing at a time. */
  async oneByOne(batch: number): Promise<this> {
    let position = 0;
    while (position < this.found.length) {
      const positions: number[] = [];
      const keys: string[] = [];
      for (; position < this.found.length && keys.length < batch; position++) {
        if (this.found[position] !== 0) continue;
        positions.push(position);
        keys.push(chunkKey(this.ids.idAt(position).toString('hex')));
      }
      if (keys.length === 0) break;
      const absent = await this.store.missing(keys, this.operation);
      for (const [at, key] of keys.entries()) if (!absent.has(key)) this.found[positions[at] ?? 0] = 1;
    }
    return this;
  }

  /** A listing of each folder, LISTINGS_IN_FLIGHT at a time. */
  async byListing(folders: readonly Folder[]): Promise<this> {
    await mapConcurrent(folders, LISTINGS_IN_FLIGHT, (folder) =>
      this.listWithin(folderPrefix(folder.byte), folder, Infinity),
    );
    return this;
  }

  /**
   * Marks found the ids of `within` listed under `prefix`, page by page, stopping (incomplete)
   * once `maxPages` pages were read and more remain; with the pages read and the keys they held.
   * A folder of a large repository lists thousands of other chunks: each key is looked up among
   * the ids (32 bytes written into one scratch buffer), nothing of it kept.
   */
  async listWithin(
    prefix: string,
    within: Folder,
    maxPages: number,
  ): Promise<{ complete: boolean; pages: number; listed: number }> {
    const scratch = Buffer.alloc(32);
    let cursor: string | undefined;
    let pages = 0;
    let listed = 0;
    do {
      if (pages >= maxPages) return { complete: false, pages, listed };
      const page = await this.store.list(prefix, {
        ...this.operation,
        limit: LIST_PAGE,
        ...(cursor !== undefined ? { cursor } : {}),
      });
      pages++;
      listed += page.objects.length;
      for (const object of page.objects) {
        const hex = chunkIdOfKey(object.key);
        if (hex === undefined) continue;
        scratch.write(hex, 0, 'hex');
        const position = this.ids.positionOf(scratch);
        if (position >= within.start && position < within.end) this.found[position] = 1;
      }
      cursor = page.cursor;
    } while (cursor !== undefined);
    return { complete: true, pages, listed };
  }
}
