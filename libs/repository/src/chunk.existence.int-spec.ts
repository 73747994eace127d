import { randomBytes } from 'node:crypto';
import type { ListOptions, OperationOptions, RemoteStore } from '@haven/remote-sdk';
import { plugin as s3Plugin } from '@haven/remote-s3';
import { scratchDir, startS3rver, type S3rverHandle } from '@haven/testing';
import {
  missingChunks,
  PER_CHUNK_EXISTENCE_LIMIT,
  type ChunkExistenceMethod,
  type ChunkExistenceOptions,
} from './chunk.existence';
import { mapConcurrent } from './concurrency';
import { DiskIndex } from './format/disk-index.codec';
import { chunkKey } from './format/repository.layout';
import { initRepository } from './repository';
import { SortedChunkIds } from './sorted-chunk-ids';
import { localRemote } from './testing/disk-pattern.fixture';

function folderName(index: number): string {
  return index.toString(16).padStart(2, '0');
}

/** A chunk id whose first byte is `folder` (two hex digits), or that starts with any hex digits. */
function idIn(folder: string): string {
  return folder + randomBytes(32 - folder.length / 2).toString('hex');
}

/** The remote as the check sees it, counting the requests it makes. */
function counted(
  store: RemoteStore,
  as: { flatListing?: boolean; pageSize?: number } = {},
): {
  store: RemoteStore;
  listed: string[];
  statted: string[];
  /** Keys of each RemoteStore.missing call. */
  batches: number[];
} {
  const listed: string[] = [];
  const statted: string[] = [];
  const batches: number[] = [];
  const wrapper = Object.create(store) as RemoteStore;
  Object.assign(wrapper, {
    list: (prefix: string, options?: ListOptions) => {
      listed.push(prefix);
      const limit = Math.min(options?.limit ?? 1000, as.pageSize ?? 1000);
      return store.list(prefix, { ...options, limit });
    },
    missing: (keys: Iterable<string>, options?: OperationOptions) => {
      const all = [...keys];
      statted.push(...all);
      batches.push(all.length);
      return store.missing(all, options);
    },
  });
  // A file system seen as an object store (its listings of a prefix hold nested keys too).
  if (as.flatListing !== undefined)
    Object.defineProperty(wrapper, 'features', { value: { ...store.features, flatListing: as.flatListing } });
  return { store: wrapper, listed, statted, batches };
}

async function putChunks(store: RemoteStore, ids: Iterable<string>): Promise<void> {
  await mapConcurrent([...ids], 16, (id) => store.put(chunkKey(id), Buffer.from('c')));
}

/** missingChunks of hex ids, answering hex ids. */
async function missingHex(
  store: RemoteStore,
  ids: Iterable<string>,
  options: ChunkExistenceOptions = {},
): Promise<string[]> {
  const missing = await missingChunks(store, SortedChunkIds.fromHex(ids), options);
  return [...missing].map((id) => id.toString('hex'));
}

const METHODS: ChunkExistenceMethod[] = ['auto', 'per-chunk', 'listing'];

describe('missingChunks on an object store (s3rver: flat listings)', () => {
  let server: S3rverHandle;
  let bucket = 0;

  beforeAll(async () => {
    server = await startS3rver({ buckets: ['b1', 'b2', 'b3', 'b4'] });
  }, 60_000);
  afterAll(() => server.stop());

  async function freshStore(): Promise<RemoteStore> {
    bucket++;
    return s3Plugin.create(
      {
        endpoint: server.endpoint,
        region: server.region,
        bucket: `b${bucket}`,
        prefix: 'repo',
        accessKeyId: server.accessKeyId,
        secretAccessKey: server.secretAccessKey,
        forcePathStyle: true,
      },
      { name: 'existence-s3' },
    );
  }

  it('a base of many chunks in a small repository: the busiest folder, then one listing of chunks/; no HEAD', async () => {
    const store = await freshStore();
    expect(store.features?.flatListing).toBe(true);
    const ids = new Set(Array.from({ length: 300 }, (_, index) => idIn(folderName(index % 100))));
    const absent = [...ids].filter((_, index) => index % 97 === 0);
    await putChunks(
      store,
      [...ids].filter((id) => !absent.includes(id)),
    );
    // Another VM's chunks in the same folders.
    await putChunks(
      store,
      Array.from({ length: 50 }, (_, index) => idIn(folderName(index % 100))),
    );

    for (const method of METHODS)
      expect([...(await missingHex(store, ids, { method }))].sort()).toEqual([...absent].sort());

    const watched = counted(store);
    await missingHex(watched.store, ids);
    expect(watched.statted).toEqual([]);
    expect(watched.listed).toHaveLength(2);
    expect(watched.listed[1]).toBe('chunks/');
  }, 60_000);

  it('a larger repository: a listing of each folder the base falls in, side by side; no HEAD', async () => {
    const store = await freshStore();
    // The busiest folder holds 20 other chunks: ~5,000 chunks in the repository by its count,
    // more pages one after another than 199 folders 64 at a time.
    const ids = new Set([
      idIn('00'),
      idIn('00'),
      idIn('00'),
      ...Array.from({ length: 199 }, (_, index) => idIn(folderName(index + 1))),
    ]);
    const absent = [...ids].filter((_, index) => index % 50 === 1);
    await putChunks(
      store,
      [...ids].filter((id) => !absent.includes(id)),
    );
    await putChunks(
      store,
      Array.from({ length: 20 }, () => idIn('00')),
    );

    const watched = counted(store);
    expect([...(await missingHex(watched.store, ids))].sort()).toEqual([...absent].sort());
    expect(watched.statted).toEqual([]);
    expect(watched.listed[0]).toBe('chunks/00/');
    expect(new Set(watched.listed).size).toBe(200);
    expect(watched.listed).toHaveLength(200);
  }, 60_000);

  it('a few chunks, one per folder: a HEAD each, no listing', async () => {
    const store = await freshStore();
    const ids = new Set(Array.from({ length: 20 }, (_, index) => idIn(folderName(index))));
    const absent = [...ids][3];
    await putChunks(
      store,
      [...ids].filter((id) => id !== absent),
    );
    const watched = counted(store);
    expect([...(await missingHex(watched.store, ids))]).toEqual([absent]);
    expect(watched.listed).toEqual([]);
    expect(watched.statted.length).toBe(20);
  }, 60_000);

  it('a dense repository (a folder needs more pages than HEADs would cost): the probe stops after one page and HEADs the rest', async () => {
    const store = await freshStore();
    // Three ids in two folders: a listing is worth it only if each folder fits one page.
    const inBusy = [idIn('00'), idIn('00')];
    const other = idIn('01');
    const ids = new Set([...inBusy, other]);
    await putChunks(store, [inBusy[0]]);
    await putChunks(
      store,
      Array.from({ length: 1001 }, () => idIn('00')),
    );
    const watched = counted(store);
    expect([...(await missingHex(watched.store, ids))].sort()).toEqual([inBusy[1], other].sort());
    expect(watched.listed).toEqual(['chunks/00/']);
    expect(watched.statted.length).toBeGreaterThanOrEqual(2);
    expect(watched.statted.length).toBeLessThanOrEqual(3);
    for (const method of METHODS)
      expect([...(await missingHex(store, ids, { method }))].sort()).toEqual([inBusy[1], other].sort());
  }, 120_000);
});

describe('missingChunks on a file system (local: listings walk folders)', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  beforeAll(async () => (dir = await scratchDir('haven-existence-')));
  afterAll(() => dir.cleanup());

  /**
   * `count` ids over `folders` chunk folders, one in `absentEvery` absent: `auto` stats each id and
   * lists nothing; `methods` find the same ones missing.
   */
  async function statsEachId(
    count: number,
    folders: number,
    absentEvery: number,
    methods: ChunkExistenceMethod[],
  ) {
    const store = localRemote(dir.path);
    const ids = new Set(Array.from({ length: count }, (_, index) => idIn(folderName(index % folders))));
    const absent = [...ids].filter((_, index) => index % absentEvery === 5);
    await putChunks(
      store,
      [...ids].filter((id) => !absent.includes(id)),
    );
    const watched = counted(store);
    expect([...(await missingHex(watched.store, ids))].sort()).toEqual([...absent].sort());
    expect(watched.listed).toEqual([]);
    expect(watched.statted.length).toBe(count);
    for (const method of methods)
      expect([...(await missingHex(store, ids, { method }))].sort()).toEqual([...absent].sort());
  }

  it('auto stats each chunk of a base of a few thousand chunks, listing only when asked; both agree', async () => {
    expect(localRemote(dir.path).features.flatListing ?? false).toBe(false);
    await statsEachId(300, 100, 101, METHODS);
  }, 60_000);

  it('auto stats each chunk past PER_CHUNK_EXISTENCE_LIMIT too where a listing stats every object (local)', async () => {
    expect(localRemote(dir.path).features.listingStatsEachObject).toBe(true);
    await statsEachId(PER_CHUNK_EXISTENCE_LIMIT + 200, 64, 1009, ['listing']);
  }, 120_000);
});

describe('ChunkStore.missingAmongIndexes', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  beforeAll(async () => (dir = await scratchDir('haven-existence-indexes-')));
  afterAll(() => dir.cleanup());

  it('checks a slice of each index at a time where it stats each id, and finds what one sorted set finds', async () => {
    const store = localRemote(dir.path);
    // 500 distinct ids over two disks of 1,000 blocks: repeats within a slice, across slices and disks.
    const pool = Array.from({ length: 500 }, (_, index) => idIn(folderName(index % 64)));
    const absent = pool.filter((_, index) => index % 37 === 3);
    await putChunks(
      store,
      pool.filter((id) => !absent.includes(id)),
    );
    const indexes = [0, 1].map((disk) => {
      const index = new DiskIndex(1000 * 2 * 1024 * 1024, 2 * 1024 * 1024);
      for (let block = disk; block < 1000; block += 1 + disk)
        index.set(block, Buffer.from(pool[(block * 7 + disk) % pool.length], 'hex'));
      return index;
    });
    const watched = counted(store);
    const repository = await initRepository(watched.store, {});
    const found = await repository.chunks.missingAmongIndexes(indexes, { sliceBlocks: 128 });
    expect([...found].map((id) => id.toString('hex')).sort()).toEqual([...absent].sort());
    expect(watched.listed).toEqual([]);
    // A slice's ids at a time: never more keys than a slice holds blocks.
    expect(Math.max(...watched.batches)).toBeLessThanOrEqual(128);
    expect(watched.batches.length).toBeGreaterThanOrEqual(2 * Math.ceil(1000 / 128) - 2);
    // Asked to list: one sorted set of every id, the same answer.
    const listing = await repository.chunks.missingAmongIndexes(indexes, {
      sliceBlocks: 128,
      method: 'listing',
    });
    expect([...listing].map((id) => id.toString('hex')).sort()).toEqual([...absent].sort());
    expect(watched.listed.length).toBeGreaterThan(0);
  }, 60_000);
});

describe('missingChunks: the ids of a folder are one run of positions among the ids', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  beforeEach(async () => (dir = await scratchDir('haven-existence-runs-')));
  afterEach(() => dir.cleanup());

  /**
   * Ids at the edges of folders and of the first-two-bytes buckets (00/00, 00/ff, 01/00, ff/ff),
   * several sharing folders 00/ and ff/, some absent in each; folder 80/ holds stored chunks but
   * no id asked about.
   */
  /** The folders the ids of edges() fall in. */
  const EDGE_FOLDERS = ['chunks/00/', 'chunks/01/', 'chunks/7f/', 'chunks/fe/', 'chunks/ff/'];

  async function edges(): Promise<{ store: RemoteStore; ids: string[]; absent: string[]; others: string[] }> {
    const store = localRemote(dir.path);
    const ids = [
      idIn('0000'),
      idIn('0000'),
      idIn('00ff'),
      idIn('0100'),
      idIn('01ff'),
      idIn('7f'),
      idIn('fe'),
      idIn('ff00'),
      idIn('ffff'),
      idIn('ffff'),
    ];
    const absent = [ids[1], ids[2], ids[3], ids[9]] as string[];
    const others = [idIn('80'), idIn('80'), idIn('00'), idIn('ff')];
    await putChunks(store, [...ids.filter((id) => !absent.includes(id)), ...others]);
    return { store, ids, absent, others };
  }

  it('a listing of each folder of the ids, and a stat of each, find the same absent ids', async () => {
    const { store, ids, absent } = await edges();
    for (const method of METHODS)
      expect((await missingHex(store, ids, { method })).sort()).toEqual([...absent].sort());
    const watched = counted(store);
    await missingHex(watched.store, ids, { method: 'listing' });
    expect([...watched.listed].sort()).toEqual(EDGE_FOLDERS);
    expect(watched.statted).toEqual([]);
  });

  it('all of them stored, or none: none missing, or every one', async () => {
    const store = localRemote(dir.path);
    const ids = [idIn('00'), idIn('00'), idIn('ff'), idIn('ff')];
    for (const method of METHODS) expect(await missingHex(store, ids, { method })).toEqual([...ids].sort());
    await putChunks(store, ids);
    for (const method of METHODS) expect(await missingHex(store, ids, { method })).toEqual([]);
    expect(await missingHex(store, [])).toEqual([]);
  });

  it('on an object store, one listing of chunks/ marks only the ids asked about', async () => {
    const { store, ids, absent } = await edges();
    const watched = counted(store, { flatListing: true });
    expect((await missingHex(watched.store, ids)).sort()).toEqual([...absent].sort());
    // The fullest folder (00/ and ff/ hold three ids each: the lowest), then the whole listing.
    expect(watched.listed).toEqual(['chunks/00/', 'chunks/']);
    expect(watched.statted).toEqual([]);
  });

  it('on an object store, the probe of the fullest folder, then a listing of each other folder', async () => {
    const { store, ids, absent } = await edges();
    // Folder ff/ is the fullest now, and large enough that listing everything costs more pages.
    await putChunks(
      store,
      Array.from({ length: 6 }, () => idIn('ff')),
    );
    const extra = idIn('ff');
    const watched = counted(store, { flatListing: true });
    expect((await missingHex(watched.store, [...ids, extra])).sort()).toEqual([...absent, extra].sort());
    expect(watched.listed[0]).toBe('chunks/ff/');
    expect([...watched.listed.slice(1)].sort()).toEqual(
      EDGE_FOLDERS.filter((folder) => folder !== 'chunks/ff/'),
    );
    expect(watched.statted).toEqual([]);
  });

  it('on a dense object store, a stat of each id the probe did not see, a batch at a time', async () => {
    const store = localRemote(dir.path);
    // Folder 00/, the fullest: two stored ids listed first (keys in order), one absent, two other
    // chunks after them; folder ff/: one stored, one absent.
    const [seenFirst, seenSecond, absentIn00] = [idIn('0000'), idIn('0001'), idIn('0002')];
    const [storedInFf, absentInFf] = [idIn('ff'), idIn('ff')];
    await putChunks(store, [seenFirst, seenSecond, storedInFf, idIn('00f0'), idIn('00f1')]);
    // One key a page: 00/ needs more pages than the two (5 ids / 2 folders) a listing is worth.
    const watched = counted(store, { flatListing: true, pageSize: 1 });
    const ids = [seenFirst, seenSecond, absentIn00, storedInFf, absentInFf];
    expect((await missingHex(watched.store, ids, { perChunkBatch: 2 })).sort()).toEqual(
      [absentIn00, absentInFf].sort(),
    );
    expect(watched.listed).toEqual(['chunks/00/', 'chunks/00/']);
    // HEADs for the three ids the probe's two pages did not show, two keys a call.
    expect(watched.batches).toEqual([2, 1]);
    expect([...watched.statted].sort()).toEqual(
      [absentIn00, storedInFf, absentInFf].map((id) => chunkKey(id)).sort(),
    );
  });

  it('a stat of each id, a batch of keys at a time: the ids either side of a batch boundary', async () => {
    const { store, ids, absent } = await edges();
    const watched = counted(store);
    expect((await missingHex(watched.store, ids, { method: 'per-chunk', perChunkBatch: 3 })).sort()).toEqual(
      [...absent].sort(),
    );
    expect(watched.batches).toEqual([3, 3, 3, 1]);
    expect([...watched.statted].sort()).toEqual(ids.map((id) => chunkKey(id)).sort());
    const one = counted(store);
    expect((await missingHex(one.store, ids, { method: 'per-chunk', perChunkBatch: 1 })).sort()).toEqual(
      [...absent].sort(),
    );
    expect(one.batches).toEqual(Array.from({ length: 10 }, () => 1));
  });
});
