import { createHash, randomBytes } from 'node:crypto';
import { compress } from '@mongodb-js/zstd';
import { Readable } from 'node:stream';
import {
  XVA_CHUNK_SIZE,
  buildXvaVmRecord,
  createXvaStream,
  decodeTarHeader,
  encodeTarHeader,
  readXvaStream,
  xvaChunkChecksum,
  zstdDecode,
  type XvaCompression,
  type XvaStreamChunk,
  type XvaStreamItem,
  type XvaStreamMetadata,
} from './index';

const MiB = XVA_CHUNK_SIZE;

function chunkPattern(seed: string, index: number, length = MiB): Buffer {
  const out = Buffer.allocUnsafe(length);
  const digest = createHash('sha256').update(`${seed}/${index}`).digest();
  for (let offset = 0; offset < length; offset += 32) {
    digest.writeUInt32LE((digest.readUInt32LE(0) + 1) >>> 0, 0);
    digest.copy(out, offset, 0, Math.min(32, length - offset));
  }
  return out;
}

async function collect(stream: AsyncIterable<Buffer | Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

async function readAll(archive: Buffer, chunkSize = 100_003): Promise<XvaStreamItem[]> {
  const items: XvaStreamItem[] = [];
  const source = Readable.from(
    (function* () {
      for (let offset = 0; offset < archive.length; offset += chunkSize)
        yield archive.subarray(offset, offset + chunkSize);
    })(),
    { objectMode: false },
  );
  for await (const item of readXvaStream(source)) items.push(item);
  return items;
}

/** Two disks: A (5.5 MiB, chunks 1 and 3 zero, last chunk half), B (3 MiB, only chunk 1 written). */
function sampleVm(): {
  record: ReturnType<typeof buildXvaVmRecord>['record'];
  disks: Parameters<typeof createXvaStream>[0]['disks'];
  expected: Map<string, Buffer>;
} {
  const sizeA = 5 * MiB + MiB / 2;
  const sizeB = 3 * MiB;
  const { record, diskIds } = buildXvaVmRecord({
    vm: {
      name_label: 'web <01> & co',
      power_state: 'Halted',
      memory_static_max: '1073741824',
      is_a_template: false,
    },
    disks: [
      { vdi: { name_label: 'root', virtual_size: sizeA }, vbd: { userdevice: '0', bootable: true } },
      { vdi: { name_label: 'data', virtual_size: sizeB }, vbd: { userdevice: '1' } },
    ],
    vifs: [{ vif: { device: '0', MAC: 'aa:bb:cc:00:11:22' }, network: { name_label: 'Pool-wide network' } }],
  });
  const [idA = '', idB = ''] = diskIds;
  const rawA = Buffer.alloc(sizeA);
  for (const index of [0, 2, 4]) chunkPattern('A', index).copy(rawA, index * MiB);
  chunkPattern('A', 5, MiB / 2).copy(rawA, 5 * MiB);
  const rawB = Buffer.alloc(sizeB);
  chunkPattern('B', 1).copy(rawB, MiB);
  const reader = (raw: Buffer) => (index: number) =>
    Promise.resolve(raw.subarray(index * MiB, Math.min(raw.length, (index + 1) * MiB)));
  return {
    record,
    disks: [
      { id: idA, virtualSize: sizeA, readChunk: reader(rawA) },
      { id: idB, virtualSize: sizeB, allocatedChunks: [1], readChunk: reader(rawB) },
    ],
    expected: new Map([
      [idA, rawA],
      [idB, rawB],
    ]),
  };
}

function rebuild(metadata: XvaStreamMetadata, chunks: XvaStreamChunk[]): Map<string, Buffer> {
  const disks = new Map(metadata.disks.map((disk) => [disk.id, Buffer.alloc(disk.virtualSize)]));
  for (const chunk of chunks) chunk.data.copy(disks.get(chunk.diskId)!, chunk.chunkIndex * MiB);
  return disks;
}

describe('XVA writer and reader', () => {
  it.each<XvaCompression>(['none', 'gzip', 'zstd'])(
    'round-trips two disks with holes and a short last chunk (%s)',
    async (compression) => {
      const { record, disks, expected } = sampleVm();
      const archive = await collect(createXvaStream({ vm: record, disks, compression }));
      const [metadata, ...rest] = await readAll(archive);
      expect(metadata.type).toBe('metadata');
      const meta = metadata as XvaStreamMetadata;
      expect(meta.compression).toBe(compression);
      expect(meta.vm.snapshot['name_label']).toBe('web <01> & co');
      expect(meta.vm.snapshot['is_a_template']).toBe(false);
      expect(meta.disks.map((disk) => [disk.virtualSize, disk.vbd?.snapshot['userdevice']])).toEqual([
        [5 * MiB + MiB / 2, '0'],
        [3 * MiB, '1'],
      ]);
      expect(meta.vifs.map((vif) => vif.snapshot['MAC'])).toEqual(['aa:bb:cc:00:11:22']);
      const chunks = rest as XvaStreamChunk[];
      // Zero chunks are left out, except the first and last of each disk.
      expect(chunks.map((chunk) => `${chunk.diskId}:${chunk.chunkIndex}`)).toEqual([
        `${disks[0].id}:0`,
        `${disks[0].id}:2`,
        `${disks[0].id}:4`,
        `${disks[0].id}:5`,
        `${disks[1].id}:0`,
        `${disks[1].id}:1`,
        `${disks[1].id}:2`,
      ]);
      expect(chunks[3].data.length).toBe(MiB / 2);
      for (const [id, raw] of rebuild(meta, chunks)) expect(raw.equals(expected.get(id)!)).toBe(true);
      if (compression !== 'none') expect(archive.length).toBeLessThan(6 * MiB);
    },
  );

  it('writes tar entries in XAPI order with xxhash checksums, and reads legacy SHA-1 ones', async () => {
    const { record, disks } = sampleVm();
    const archive = await collect(createXvaStream({ vm: record, disks: [disks[1]], checksum: 'sha1' }));
    const names: string[] = [];
    let offset = 0;
    for (;;) {
      const header = decodeTarHeader(archive.subarray(offset, offset + 512), offset);
      if (header === undefined) break;
      names.push(header.name);
      offset += 512 + Math.ceil(header.size / 512) * 512;
    }
    const id = disks[1].id;
    expect(names).toEqual([
      'ova.xml',
      `${id}/00000000`,
      `${id}/00000000.checksum`,
      `${id}/00000001`,
      `${id}/00000001.checksum`,
      `${id}/00000002`,
      `${id}/00000002.checksum`,
    ]);
    const items = await readAll(archive);
    expect(items.filter((item) => item.type === 'chunk').map((item) => item.checksum)).toEqual([
      'sha1',
      'sha1',
      'sha1',
    ]);
    // Published XXH64 test vectors (seed 0).
    expect(await xvaChunkChecksum('xxhash', Buffer.alloc(0))).toBe('EF46DB3751D8E999');
    expect(await xvaChunkChecksum('xxhash', Buffer.from('abc'))).toBe('44BC2CF5AD770999');
    expect(await xvaChunkChecksum('sha1', Buffer.from('abc'))).toBe(
      'a9993e364706816aba3e25717850c26c9cd0d89d',
    );
  });

  it('skips keep-alive entries (empty chunks XAPI sends while a slow export is idle)', async () => {
    const { record, disks } = sampleVm();
    const disk = disks[1];
    const archive = await collect(createXvaStream({ vm: record, disks: [disk] }));
    // Insert an empty "00000001" entry and its checksum right after ova.xml's entry.
    const ovaSize = decodeTarHeader(archive.subarray(0, 512), 0)!.size;
    const afterOva = 512 + Math.ceil(ovaSize / 512) * 512;
    const emptySum = Buffer.from(await xvaChunkChecksum('xxhash', Buffer.alloc(0)));
    const keepAlive = Buffer.concat([
      encodeTarHeader(`${disk.id}/00000001`, 0),
      encodeTarHeader(`${disk.id}/00000001.xxhash`, emptySum.length),
      emptySum,
      Buffer.alloc(512 - emptySum.length),
    ]);
    const patched = Buffer.concat([archive.subarray(0, afterOva), keepAlive, archive.subarray(afterOva)]);
    const items = await readAll(patched);
    expect(items.filter((item) => item.type === 'chunk').map((item) => item.chunkIndex)).toEqual([0, 1, 2]);
  });

  it('reports a flipped byte in a chunk as XVA_CHECKSUM_MISMATCH naming the entry', async () => {
    const { record, disks } = sampleVm();
    const archive = await collect(createXvaStream({ vm: record, disks: [disks[1]] }));
    const ovaSize = decodeTarHeader(archive.subarray(0, 512), 0)!.size;
    const firstChunkData = 512 + Math.ceil(ovaSize / 512) * 512 + 512;
    const damaged = Buffer.from(archive);
    damaged[firstChunkData + 1000] = damaged[firstChunkData + 1000] ^ 0x40;
    await expect(readAll(damaged)).rejects.toMatchObject({
      code: 'XVA_CHECKSUM_MISMATCH',
      entry: `${disks[1].id}/00000000`,
    });
  });

  it('reports cut-short archives, foreign tars and corrupt compression with typed errors', async () => {
    const { record, disks } = sampleVm();
    const archive = await collect(createXvaStream({ vm: record, disks }));
    await expect(readAll(archive.subarray(0, archive.length - 3 * MiB))).rejects.toMatchObject({
      code: 'XVA_TRUNCATED',
    });
    // Cut exactly at an entry boundary: only the missing last chunk betrays it.
    const ovaSize = decodeTarHeader(archive.subarray(0, 512), 0)!.size;
    const afterFirstPair = 512 + Math.ceil(ovaSize / 512) * 512 + 512 + MiB + 1024;
    await expect(readAll(archive.subarray(0, afterFirstPair))).rejects.toMatchObject({
      code: 'XVA_TRUNCATED',
    });
    const foreign = Buffer.concat([
      encodeTarHeader('README', 3),
      Buffer.from('hi\n'),
      Buffer.alloc(509 + 1024),
    ]);
    await expect(readAll(foreign)).rejects.toMatchObject({ code: 'XVA_OVA_XML_MISSING' });
    const gz = await collect(createXvaStream({ vm: record, disks, compression: 'gzip' }));
    await expect(readAll(gz.subarray(0, gz.length - 100))).rejects.toMatchObject({ code: 'XVA_COMPRESSION' });
    const zst = await collect(createXvaStream({ vm: record, disks, compression: 'zstd' }));
    const badZst = Buffer.from(zst);
    badZst.fill(0x55, 200, 400);
    await expect(readAll(badZst)).rejects.toThrow();
  });

  it('refuses disks whose size disagrees with their VDI record', () => {
    const { record, disks } = sampleVm();
    expect(() => createXvaStream({ vm: record, disks: [{ ...disks[0], virtualSize: 7 * MiB }] })).toThrow(
      /virtual_size/,
    );
    expect(() => createXvaStream({ vm: record, disks: [{ ...disks[0], id: 'Ref:99' }] })).toThrow(
      /no VDI object/,
    );
  });
});

describe('zstd decoding', () => {
  it('decodes small frames natively and switches to streaming for a frame too large to buffer', async () => {
    const small = Buffer.alloc(3 * MiB, 'small frame ');
    const large = randomBytes(12 * MiB); // incompressible: a frame of more than 8 MiB
    for (const parts of [
      [small, large, small],
      [large, small],
    ]) {
      const compressed = Buffer.concat(await Promise.all(parts.map((part) => compress(part, 3))));
      const slices: Buffer[] = [];
      for (let offset = 0; offset < compressed.length; offset += 65_536)
        slices.push(compressed.subarray(offset, offset + 65_536));
      const source = Readable.from(slices);
      const decoded = await collect(zstdDecode(source));
      expect(decoded.equals(Buffer.concat(parts))).toBe(true);
    }
    const truncated = (await compress(small, 3)).subarray(0, 100);
    await expect(collect(zstdDecode(Readable.from([truncated])))).rejects.toMatchObject({
      code: 'XVA_COMPRESSION',
    });
  });
});
