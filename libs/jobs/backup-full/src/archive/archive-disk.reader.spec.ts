import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import localRemote from '@haven/remote-local';
import type { RemoteStore } from '@haven/remote-sdk';
import { initRepository } from '@haven/repository';
import { scratchDir } from '@haven/testing';
import { createRawStreamFromVhdStream, VHD_BLOCK_SIZE } from '@haven/vhd';
import { buildXvaVmRecord, createXvaStream, XVA_CHUNK_SIZE, type XvaCompression } from '@haven/xva';
import { ArchiveDiskReader, type ArchiveDisk } from './archive-disk.reader';
import { ArchiveError } from './archive.errors';
import { newArchiveId } from './archive.layout';
import { ARCHIVE_FORMAT, ARCHIVE_FORMAT_VERSION, type ArchiveManifest } from './archive.manifest';
import { cutSegments } from './archive.segmenter';
import { ArchiveStore } from './archive.store';

const MiB = 1024 * 1024;
const VM = '0b6f1e2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b';

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part);
  return Buffer.concat(parts);
}

/**
 * Two disks with a known pattern: `boot` (9 MiB: data in chunks 0, 3 and 8, the last one partly
 * zeros) at userdevice 0, `data` (5 MiB - 512, data in chunk 2 only) at userdevice 3.
 */
function disks(): { boot: Buffer; data: Buffer } {
  const boot = Buffer.alloc(9 * MiB);
  randomBytes(MiB).copy(boot, 0);
  randomBytes(MiB).copy(boot, 3 * MiB);
  randomBytes(1000).copy(boot, 8 * MiB + 5);
  const data = Buffer.alloc(5 * MiB - 512);
  randomBytes(MiB / 2).copy(data, 2 * MiB + 100);
  return { boot, data };
}

function xvaOf(content: { boot: Buffer; data: Buffer }, compression: XvaCompression): Readable {
  const { record, diskIds } = buildXvaVmRecord({
    vm: { name_label: 'web', uuid: VM },
    disks: [
      {
        vdi: { uuid: 'vdi-boot', name_label: 'boot disk', virtual_size: content.boot.length },
        vbd: { userdevice: '0' },
      },
      {
        vdi: { uuid: 'vdi-data', name_label: 'data disk', virtual_size: content.data.length },
        vbd: { userdevice: '3' },
      },
      // Described by ova.xml but without a single chunk in the tar (legitimate: a disk left out).
      {
        vdi: { uuid: 'vdi-empty', name_label: 'empty disk', virtual_size: 3 * MiB },
        vbd: { userdevice: '4' },
      },
    ],
  });
  const source = (id: string | undefined, bytes: Buffer) => ({
    id: id ?? '',
    virtualSize: bytes.length,
    readChunk: (index: number) =>
      Promise.resolve(bytes.subarray(index * XVA_CHUNK_SIZE, (index + 1) * XVA_CHUNK_SIZE)),
  });
  return createXvaStream({
    vm: record,
    disks: [source(diskIds[0], content.boot), source(diskIds[1], content.data)],
    compression,
  });
}

describe('disks read out of a full-backup archive', () => {
  let folder: { path: string; cleanup: () => Promise<void> };
  let store: RemoteStore;
  let archives: ArchiveStore;

  beforeEach(async () => {
    folder = await scratchDir('haven-archive-disk-');
    store = await localRemote.create({ path: folder.path }, { name: 'archive-disk-test' });
    archives = ArchiveStore.forRepository(await initRepository(store, {}));
  });
  afterEach(async () => {
    await store.close();
    await folder.cleanup();
  });

  /** Stores the XVA as the executor does (segments, then the manifest), after `alter` if given. */
  async function archive(
    xva: Readable,
    compression: XvaCompression,
    alter: (bytes: Buffer) => Buffer = (bytes) => bytes,
  ): Promise<ArchiveManifest> {
    const bytes = alter(await collect(xva));
    const location = { vmUuid: VM, archiveId: newArchiveId('task-disk') };
    const segments = [];
    for await (const segment of cutSegments(Readable.from([bytes]), 256 * 1024))
      segments.push(await archives.writeSegment(location, segment.index, segment.data, segment.sha256));
    const manifest: ArchiveManifest = {
      format: ARCHIVE_FORMAT,
      version: ARCHIVE_FORMAT_VERSION,
      id: location.archiveId,
      vm: { uuid: VM, name: 'web' },
      takenAt: new Date().toISOString(),
      createdAt: new Date().toISOString(),
      compression,
      encrypted: false,
      segmentSize: 256 * 1024,
      segments,
      totalSize: bytes.length,
      storedSize: bytes.length,
    };
    await archives.commit(manifest);
    return manifest;
  }

  it.each(['none', 'zstd', 'gzip'] as const)(
    'lists the disks from ova.xml and streams each as raw, holes as zeros (%s)',
    async (compression) => {
      const content = disks();
      const reader = new ArchiveDiskReader(archives, await archive(xvaOf(content, compression), compression));
      const listed = await reader.disks();
      expect(listed).toEqual([
        { key: '0', folder: 'Ref:2', uuid: 'vdi-boot', name: 'boot disk', virtualSize: 9 * MiB },
        { key: '3', folder: 'Ref:4', uuid: 'vdi-data', name: 'data disk', virtualSize: 5 * MiB - 512 },
        { key: '4', folder: 'Ref:6', uuid: 'vdi-empty', name: 'empty disk', virtualSize: 3 * MiB },
      ]);
      const [boot, data, empty] = listed as [ArchiveDisk, ArchiveDisk, ArchiveDisk];
      expect((await collect(reader.createRawStream(boot))).equals(content.boot)).toBe(true);
      expect((await collect(reader.createRawStream(data))).equals(content.data)).toBe(true);
      expect((await collect(reader.createRawStream(empty))).equals(Buffer.alloc(3 * MiB))).toBe(true);
    },
  );

  it('serves byte ranges: across chunks, inside a hole, the tail, and refuses one past the end', async () => {
    const content = disks();
    const reader = new ArchiveDiskReader(archives, await archive(xvaOf(content, 'zstd'), 'zstd'));
    const boot = await reader.disk('0');
    const range = async (start: number, end: number) =>
      collect(reader.createRawStream(boot, { range: { start, end } }));
    for (const [start, end] of [
      [MiB - 10, 3 * MiB + 10],
      [MiB + 5, 2 * MiB + 7],
      [3 * MiB, 4 * MiB - 1],
      [8 * MiB + 3, 9 * MiB - 1],
      [0, 0],
    ] as const)
      expect((await range(start, end)).equals(content.boot.subarray(start, end + 1))).toBe(true);
    expect(() => reader.createRawStream(boot, { range: { start: 9 * MiB, end: 9 * MiB } })).toThrow(
      ArchiveError,
    );
  });

  it('builds a dynamic VHD of only the non-zero blocks, which reads back as the disk', async () => {
    const content = disks();
    const reader = new ArchiveDiskReader(archives, await archive(xvaOf(content, 'none'), 'none'));
    const boot = await reader.disk('0');
    const data = await reader.disk('3');
    // boot: chunks 0, 3 and 8 -> blocks 0, 1 and 4; data: chunk 2 -> block 1.
    expect(await reader.allocatedBlocks(boot)).toEqual([0, 1, 4]);
    expect(await reader.allocatedBlocks(data)).toEqual([1]);
    const empty = await reader.disk('4');
    expect(await reader.allocatedBlocks(empty)).toEqual([]);
    for (const [disk, bytes] of [
      [boot, content.boot],
      [data, content.data],
      [empty, Buffer.alloc(3 * MiB)],
    ] as const) {
      const { stream, length } = await reader.createVhdStream(disk);
      const vhd = await collect(stream);
      expect(vhd.length).toBe(length);
      expect((await collect(createRawStreamFromVhdStream(Readable.from([vhd])))).equals(bytes)).toBe(true);
    }
    expect((await reader.createVhdStream(boot)).length).toBeLessThan(4 * VHD_BLOCK_SIZE);
  });

  it('names the missing key and the keys there are', async () => {
    const reader = new ArchiveDiskReader(archives, await archive(xvaOf(disks(), 'none'), 'none'));
    await expect(reader.disk('7')).rejects.toMatchObject({
      code: 'ARCHIVE_DISK_NOT_FOUND',
      message: expect.stringContaining('no disk "7" (its disks: 0, 3, 4)'),
    });
  });

  it('fails the stream on a damaged chunk or a cut archive, never ending short', async () => {
    const content = disks();
    // A flipped byte inside the boot disk's chunk 3 (segments hashed after the damage: only the
    // XVA's own checksum can tell).
    const damaged = new ArchiveDiskReader(
      archives,
      await archive(xvaOf(content, 'none'), 'none', (bytes) => {
        const at = bytes.indexOf(content.boot.subarray(3 * MiB, 3 * MiB + 64));
        expect(at).toBeGreaterThan(0);
        bytes[at + 1000] ^= 0x01;
        return bytes;
      }),
    );
    const boot = await damaged.disk('0');
    await expect(collect(damaged.createRawStream(boot))).rejects.toMatchObject({
      code: 'XVA_CHECKSUM_MISMATCH',
    });
    // The VHD's first pass finds it before a byte is sent.
    await expect(damaged.createVhdStream(boot)).rejects.toMatchObject({
      code: 'ARCHIVE_DAMAGED',
      message: expect.stringContaining('chunk 3 of Ref:2 hashes to'),
    });
    // A range before the damage is served: every chunk it covers checked.
    const head = await collect(damaged.createRawStream(boot, { range: { start: 0, end: MiB - 1 } }));
    expect(head.equals(content.boot.subarray(0, MiB))).toBe(true);

    // Cut after the data disk's first chunk: its last chunk never comes.
    const cut = new ArchiveDiskReader(
      archives,
      await archive(xvaOf(content, 'none'), 'none', (bytes) => {
        const at = bytes.indexOf(content.data.subarray(2 * MiB + 100, 2 * MiB + 164));
        return bytes.subarray(0, at + MiB);
      }),
    );
    await expect(collect(cut.createRawStream(await cut.disk('3')))).rejects.toMatchObject({
      code: 'XVA_TRUNCATED',
    });
  });
});
