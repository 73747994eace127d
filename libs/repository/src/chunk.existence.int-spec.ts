import { randomBytes } from 'node:crypto';
import type { ListOptions, OperationOptions, RemoteStore } from '@haven/remote-sdk';
import { plugin as s3Plugin } from '@haven/remote-s3';
import { scratchDir, startS3rver, type S3rverHandle } from '@haven/testing';
import { missingChunks, type ChunkExistenceMethod } from './chunk.existence';
import { mapConcurrent } from './concurrency';
import { chunkKey } from './format/repository.layout';
import { localRemote } from './testing/disk-pattern.fixture';

function folderName(index: number): string {
  return index.toString(16).padStart(2, '0');
}

/** A chunk id whose first byte is `folder` (two hex digits). */
function idIn(folder: string): string {
  return folder + randomBytes(31).toString('hex');
}

/** The remote as the check sees it, counting the requests it makes. */
function counted(store: RemoteStore): {
  store: RemoteStore;
  listed: string[];
  statted: string[];
} {
  const listed: string[] = [];
  const statted: string[] = [];
  const wrapper = Object.create(store) as RemoteStore;
  Object.assign(wrapper, {
    list: (prefix: string, options?: ListOptions) => {
      listed.push(prefix);
      return store.list(prefix, options);
    },
    missing: (keys: Iterable<string>, options?: OperationOptions) => {
      const all = [...keys];
      statted.push(...all);
      return store.missing(all, options);
    },
  });
  return { store: wrapper, listed, statted };
}

async function putChunks(store: RemoteStore, ids: Iterable<string>): Promise<void> {
  await mapConcurrent([...ids], 16, (id) => store.put(chunkKey(id), Buffer.from('c')));
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
      expect([...(await missingChunks(store, ids, { method }))].sort()).toEqual([...absent].sort());

    const watched = counted(store);
    await missingChunks(watched.store, ids);
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
    expect([...(await missingChunks(watched.store, ids))].sort()).toEqual([...absent].sort());
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
    expect([...(await missingChunks(watched.store, ids))]).toEqual([absent]);
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
    expect([...(await missingChunks(watched.store, ids))].sort()).toEqual([inBusy[1], other].sort());
    expect(watched.listed).toEqual(['chunks/00/']);
    expect(watched.statted.length).toBeGreaterThanOrEqual(2);
    expect(watched.statted.length).toBeLessThanOrEqual(3);
    for (const method of METHODS)
      expect([...(await missingChunks(store, ids, { method }))].sort()).toEqual([inBusy[1], other].sort());
  }, 120_000);
});

describe('missingChunks on a file system (local: listings walk folders)', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  beforeAll(async () => (dir = await scratchDir('haven-existence-')));
  afterAll(() => dir.cleanup());

  it('auto stats each chunk of a base of a few thousand chunks, listing only when asked; both agree', async () => {
    const store = localRemote(dir.path);
    expect(store.features.flatListing ?? false).toBe(false);
    const ids = new Set(Array.from({ length: 300 }, (_, index) => idIn(folderName(index % 100))));
    const absent = [...ids].filter((_, index) => index % 101 === 5);
    await putChunks(
      store,
      [...ids].filter((id) => !absent.includes(id)),
    );
    const watched = counted(store);
    expect([...(await missingChunks(watched.store, ids))].sort()).toEqual([...absent].sort());
    expect(watched.listed).toEqual([]);
    expect(watched.statted.length).toBe(300);
    for (const method of METHODS)
      expect([...(await missingChunks(store, ids, { method }))].sort()).toEqual([...absent].sort());
  }, 60_000);
});
