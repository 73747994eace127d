import { randomBytes } from 'node:crypto';
import { readFile, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import localRemote from '@haven/remote-local';
import type { RemoteStore } from '@haven/remote-sdk';
import { BufferPool, initRepository, openRepository, type Repository } from '@haven/repository';
import { countInFlight, scratchDir } from '@haven/testing';
import { ArchiveError } from './archive.errors';
import {
  archiveManifestKey,
  archiveOfTask,
  newArchiveId,
  parseArchiveManifestKey,
  segmentKey,
} from './archive.layout';
import {
  ARCHIVE_FORMAT,
  ARCHIVE_FORMAT_VERSION,
  parseArchiveManifest,
  type ArchiveManifest,
} from './archive.manifest';
import { ArchiveSealer } from './archive.sealer';
import { cutSegments } from './archive.segmenter';
import { ArchiveStore, sha256Hex } from './archive.store';
import { VM, writeArchive } from './testing/archive.fixture';

const KiB = 1024;
const PASSPHRASE = 'archive unit passphrase';
const FAST_KDF = { N: 1024, r: 8, p: 1 };

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part);
  return Buffer.concat(parts);
}

describe('full-backup archives on a remote', () => {
  let folder: { path: string; cleanup: () => Promise<void> };
  let store: RemoteStore;

  beforeEach(async () => {
    folder = await scratchDir('haven-archive-');
    store = await localRemote.create({ path: folder.path }, { name: 'archive-test' });
  });
  afterEach(async () => {
    await store.close();
    await folder.cleanup();
  });

  async function encrypted(): Promise<Repository> {
    return initRepository(store, { key: PASSPHRASE, kdf: FAST_KDF });
  }

  it('cuts the stream in segments of the given size, the last one shorter, each hashed', async () => {
    const data = randomBytes(10 * KiB + 17);
    const segments = [];
    for await (const segment of cutSegments(Readable.from([data.subarray(0, 3), data.subarray(3)]), 4 * KiB))
      segments.push(segment);
    expect(segments.map((s) => s.data.length)).toEqual([4 * KiB, 4 * KiB, 2 * KiB + 17]);
    expect(Buffer.concat(segments.map((s) => s.data)).equals(data)).toBe(true);
    expect(segments[1]?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(segments.map((s) => s.index)).toEqual([0, 1, 2]);
  });

  it('cuts into pooled buffers when given a pool: each given back on release, or when the stream stops', async () => {
    const buffers = new BufferPool(4 * KiB, 2);
    const data = randomBytes(20 * KiB + 3);
    const seen = new Set<ArrayBufferLike>();
    const copies: Buffer[] = [];
    for await (const segment of cutSegments(
      Readable.from([data.subarray(0, 5000), data.subarray(5000)]),
      4 * KiB,
      buffers,
    )) {
      expect(buffers.inUse).toBe(1);
      seen.add(segment.data.buffer);
      copies.push(Buffer.from(segment.data));
      segment.release?.();
      segment.release?.(); // a second release of the same segment changes nothing
    }
    expect(Buffer.concat(copies).equals(data)).toBe(true);
    expect(copies.map((copy) => copy.length)).toEqual([4096, 4096, 4096, 4096, 4096, 3]);
    // Six segments through one buffer.
    expect(seen.size).toBe(1);
    expect(buffers.inUse).toBe(0);

    // A consumer that stops after the first segment: the buffer being filled goes back too.
    const abandoned = cutSegments(Readable.from([data]), 4 * KiB, buffers);
    const first = await abandoned.next();
    expect(buffers.inUse).toBe(1);
    await abandoned.return(undefined);
    expect(buffers.inUse).toBe(1); // the one it handed out is still lent
    if (first.done !== true) first.value.release?.();
    expect(buffers.inUse).toBe(0);
    await expect(cutSegments(Readable.from([data]), 8 * KiB, buffers).next()).rejects.toThrow(RangeError);
  });

  it('stores plain segments and a plain JSON manifest in an unencrypted repository, read back whole', async () => {
    const archives = ArchiveStore.forRepository(await initRepository(store, {}));
    const xva = randomBytes(9 * KiB + 5);
    const { manifest, manifestKey } = await writeArchive(archives, xva, 4 * KiB);
    expect(manifestKey).toBe(archiveManifestKey(VM, manifest.id));
    // Plain: the segments are the XVA bytes themselves, the manifest is readable JSON.
    const first = await readFile(join(folder.path, segmentKey(VM, manifest.id, 0)));
    expect(first.equals(xva.subarray(0, 4 * KiB))).toBe(true);
    const json = JSON.parse(await readFile(join(folder.path, manifestKey), 'utf8'));
    expect(json).toMatchObject({
      format: 'haven-full-archive',
      version: 1,
      totalSize: xva.length,
      encrypted: false,
    });
    const listed = await archives.list({ vmUuid: VM });
    expect(listed.map((a) => a.manifestKey)).toEqual([manifestKey]);
    expect(listed[0]?.manifest.segments).toHaveLength(3);
    expect((await collect(archives.createReadStream(listed[0].manifest))).equals(xva)).toBe(true);
  });

  it('seals every segment and the manifest in an encrypted repository, and reads them back', async () => {
    const archives = ArchiveStore.forRepository(await encrypted());
    expect(archives.sealer.encrypted).toBe(true);
    const xva = Buffer.alloc(12 * KiB, 'the same text over and over ');
    const { manifest, manifestKey } = await writeArchive(archives, xva, 4 * KiB);
    const sealed = await readFile(join(folder.path, segmentKey(VM, manifest.id, 0)));
    expect(sealed.subarray(0, 4).toString()).toBe('HVAS');
    expect(sealed.length).toBe(4 * KiB + 8 + 12 + 16);
    expect(sealed.includes(Buffer.from('the same text'))).toBe(false);
    const stored = await readFile(join(folder.path, manifestKey));
    expect(stored.subarray(0, 4).toString()).toBe('HVAM');
    expect(stored.includes(Buffer.from('haven-full-archive'))).toBe(false);
    expect(manifest.storedSize).toBe(3 * (4 * KiB + 36));
    // Opened again from the passphrase alone.
    const reopened = ArchiveStore.forRepository(await openRepository(store, { key: PASSPHRASE }));
    const read = await reopened.readManifest(manifestKey);
    expect(read).toEqual(manifest);
    expect((await collect(reopened.segments(read))).equals(xva)).toBe(true);
    expect((await collect(reopened.createReadStream(read))).equals(xva)).toBe(true);
    // Every segment was sealed into the same buffer, given back after each put.
    expect(archives.sealBuffersInUse).toBe(0);
  });

  it('reads archives written with 16 MiB segments by earlier versions (sealed copies, not pooled)', async () => {
    // The reader takes each segment's size from the manifest: archives of any segment size read back.
    const archives = ArchiveStore.forRepository(await encrypted());
    const MiB = 1024 * KiB;
    const xva = randomBytes(16 * MiB + 5 * KiB);
    const location = { vmUuid: VM, archiveId: newArchiveId('task-16') };
    const segments = [];
    for (const [index, start] of [0, 16 * MiB].entries()) {
      const plaintext = xva.subarray(start, start + 16 * MiB);
      // As the writer did before: one freshly allocated sealed copy per segment.
      const sealed = archives.sealer.sealSegment(location.archiveId, index, plaintext);
      await store.put(segmentKey(VM, location.archiveId, index), sealed);
      segments.push({ size: plaintext.length, storedSize: sealed.length, sha256: sha256Hex(plaintext) });
    }
    const old: ArchiveManifest = {
      format: ARCHIVE_FORMAT,
      version: ARCHIVE_FORMAT_VERSION,
      id: location.archiveId,
      vm: { uuid: VM, name: 'web', record: { name_label: 'web' } },
      tenant: 'tenant-1',
      job: { id: 'job-1', name: 'weekly' },
      taskId: 'task-16',
      takenAt: new Date().toISOString(),
      createdAt: new Date().toISOString(),
      compression: 'zstd',
      encrypted: true,
      segmentSize: 16 * MiB,
      segments,
      totalSize: xva.length,
      storedSize: segments.reduce((sum, segment) => sum + segment.storedSize, 0),
    };
    const manifestKey = await archives.commit(old);
    const read = await archives.readManifest(manifestKey);
    expect(read.segments.map((segment) => segment.size)).toEqual([16 * MiB, 5 * KiB]);
    expect((await collect(archives.createReadStream(read))).equals(xva)).toBe(true);
    expect((await collect(archives.segments(read))).equals(xva)).toBe(true);
  });

  it('refuses another key: the manifest does not authenticate, and a wrong passphrase is WRONG_KEY', async () => {
    const archives = ArchiveStore.forRepository(await encrypted());
    const { manifestKey } = await writeArchive(archives, randomBytes(5 * KiB), 4 * KiB);
    const stranger = new ArchiveStore(store, ArchiveSealer.withKey(randomBytes(32)));
    const error = await stranger.readManifest(manifestKey).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ArchiveError);
    expect(error).toMatchObject({ code: 'MANIFEST_DAMAGED', key: manifestKey });
    expect((error as Error).message).toContain('wrong repository key');
    await expect(openRepository(store, { key: 'not the passphrase at all' })).rejects.toMatchObject({
      code: 'WRONG_KEY',
    });
  });

  it.each([
    ['encrypted', true],
    ['plain', false],
  ])('names a segment with a flipped byte (%s) when it is read', async (_label, withKey) => {
    const archives = ArchiveStore.forRepository(
      withKey ? await encrypted() : await initRepository(store, {}),
    );
    const { manifest } = await writeArchive(archives, randomBytes(10 * KiB), 4 * KiB);
    const damaged = segmentKey(VM, manifest.id, 1);
    const path = join(folder.path, damaged);
    const bytes = await readFile(path);
    bytes[100] ^= 0x01;
    await writeFile(path, bytes);
    const error = await collect(archives.segments(manifest)).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'SEGMENT_DAMAGED', key: damaged });
    expect((error as Error).message).toContain(damaged);
    // The segments before it are fine on their own.
    await expect(archives.readSegment(manifest, 0)).resolves.toHaveLength(4 * KiB);
  });

  it('refuses sealed segments swapped within an archive, and a missing segment is named', async () => {
    const archives = ArchiveStore.forRepository(await encrypted());
    const { manifest } = await writeArchive(archives, randomBytes(8 * KiB), 4 * KiB);
    const [zero, one] = [0, 1].map((index) => join(folder.path, segmentKey(VM, manifest.id, index)));
    await rename(zero, `${zero}.tmp`);
    await rename(one, zero);
    await rename(`${zero}.tmp`, one);
    await expect(archives.readSegment(manifest, 0)).rejects.toMatchObject({ code: 'SEGMENT_DAMAGED' });
    await store.delete(segmentKey(VM, manifest.id, 1));
    await expect(archives.readSegment(manifest, 1)).rejects.toMatchObject({
      code: 'SEGMENT_MISSING',
      key: segmentKey(VM, manifest.id, 1),
    });
  });

  it('keeps an archive without manifest invisible, and removes an archive manifest first', async () => {
    const archives = ArchiveStore.forRepository(await initRepository(store, {}));
    const partial = { vmUuid: VM, archiveId: newArchiveId('crashed-task') };
    await archives.writeSegment(partial, 0, Buffer.alloc(10), 'a'.repeat(64));
    const { manifest } = await writeArchive(archives, randomBytes(5 * KiB), 4 * KiB, 'task-2');
    expect((await archives.list()).map((a) => a.manifest.id)).toEqual([manifest.id]);
    const folders = await archives.folders(VM);
    expect(folders.map((f) => [f.archiveId, f.committed])).toEqual(
      [
        [partial.archiveId, false],
        [manifest.id, true],
      ].sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
    );
    expect(folders.filter((f) => archiveOfTask(f.archiveId, 'crashed-task'))).toHaveLength(1);
    await archives.remove(partial);
    await archives.remove({ vmUuid: VM, archiveId: manifest.id });
    const left: string[] = [];
    for await (const object of store.listAll('archives/')) left.push(object.key);
    expect(left).toEqual([]);
    await expect(archives.readManifest(archiveManifestKey(VM, manifest.id))).rejects.toMatchObject({
      code: 'ARCHIVE_NOT_FOUND',
    });
  });

  it.each([
    ['a file system (1 write in flight)', 1, 2, 1],
    ['an object store (4 writes in flight)', 4, 5, 4],
  ])(
    'reads %s with as many segment fetches going as writes, in order',
    async (_label, writesInFlight, segmentsAhead, streamAhead) => {
      Object.defineProperty(store, 'writesInFlight', { value: writesInFlight });
      const archives = ArchiveStore.forRepository(await initRepository(store, {}));
      const xva = randomBytes(12 * 4 * KiB + 7);
      const { manifest } = await writeArchive(archives, xva, 4 * KiB);
      // Counts the segment reads running at once; every third one answers late (order must hold).
      const reads = countInFlight(store.getBuffer.bind(store), (key: string) =>
        Number(key.slice(-6)) % 3 === 0 ? 30 : 1,
      );
      store.getBuffer = reads.call;
      // The generator alone fetches the segment consumed plus `writesInFlight` ahead.
      const slowly = async (segments: AsyncIterable<Buffer>): Promise<Buffer> => {
        const parts: Buffer[] = [];
        for await (const part of segments) {
          for (let turn = 0; turn < 40; turn++) await new Promise((resolve) => setImmediate(resolve));
          parts.push(part);
        }
        return Buffer.concat(parts);
      };
      expect((await slowly(archives.segments(manifest))).equals(xva)).toBe(true);
      expect(reads.count.peak).toBe(segmentsAhead);
      expect(reads.count.running).toBe(0);
      // The Readable holds one more itself: `writesInFlight` fetches going in all.
      reads.count.peak = 0;
      expect((await slowly(archives.createReadStream(manifest))).equals(xva)).toBe(true);
      expect(reads.count.peak).toBe(streamAhead);
    },
  );

  it('parses manifest keys and names what is wrong in a damaged manifest', () => {
    const id = newArchiveId('t');
    expect(parseArchiveManifestKey(`archives/${VM}/${id}/manifest`)).toEqual({ vmUuid: VM, archiveId: id });
    expect(parseArchiveManifestKey(`restore-points/${id}/manifest`)).toBeUndefined();
    expect(parseArchiveManifestKey(`archives/not-a-uuid/${id}/manifest`)).toBeUndefined();
    expect(archiveOfTask(id, 't')).toBe(true);
    expect(archiveOfTask(id, 'u')).toBe(false);
    const base = {
      format: ARCHIVE_FORMAT,
      version: 1,
      id,
      vm: { uuid: VM, name: 'web' },
      takenAt: 'x',
      createdAt: 'x',
      compression: 'zstd',
      segmentSize: 4,
      segments: [{ size: 4, storedSize: 4, sha256: 'b'.repeat(64) }],
      totalSize: 4,
      storedSize: 4,
    };
    const parse = (value: unknown) => () => parseArchiveManifest(Buffer.from(JSON.stringify(value)), 'k', id);
    expect(parse(base)()).toMatchObject({ id, totalSize: 4 });
    expect(parse({ ...base, version: 2 })).toThrow(/version 2 is not supported/);
    expect(parse({ ...base, compression: 'lz4' })).toThrow(/compression/);
    expect(parse({ ...base, totalSize: 5 })).toThrow(/totalSize is not the sum/);
    expect(parse({ ...base, segments: [{ size: 4, storedSize: 4, sha256: 'nope' }] })).toThrow(
      /segments\[0\]\.sha256/,
    );
    expect(() => parseArchiveManifest(Buffer.from('{'), 'k')).toThrow(
      /archive manifest k is damaged: not JSON/,
    );
  });
});
