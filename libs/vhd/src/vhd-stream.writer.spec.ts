import {
  VHD_BLOCK_FOOTPRINT,
  VHD_BLOCK_SIZE,
  VhdFormatError,
  VhdImage,
  bufferSource,
  createVhdStream,
  decodeVhdFooter,
  decodeVhdHeader,
  parseVhdStream,
  vhdStreamLength,
  type VhdStreamBlock,
  type VhdStreamMetadata,
} from './index';
import { chunkedStream, collect, expectBytes, patternBlock } from './vhd.fixture';

const MiB = 1024 * 1024;

describe('createVhdStream', () => {
  it('lays out footer copy, header, BAT, blocks in ascending order, then the footer', async () => {
    const virtualSize = 7 * MiB + 512; // 4 blocks, the last one short
    const stream = createVhdStream({
      virtualSize,
      allocatedBlocks: [0, 3],
      type: 'dynamic',
      uuid: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0',
      timestamp: new Date('2024-05-01T12:00:00Z'),
      readBlock: (index) =>
        Promise.resolve(index === 3 ? patternBlock('w', 3).subarray(0, MiB + 512) : patternBlock('w', index)),
    });
    const file = await collect(stream);
    expect(file.length).toBe(vhdStreamLength({ virtualSize, allocatedBlocks: [0, 3] }));
    expect(file.length).toBe(512 + 1024 + 512 + 2 * VHD_BLOCK_FOOTPRINT + 512);
    const footer = decodeVhdFooter(file.subarray(0, 512));
    expect(footer).toMatchObject({
      diskType: 'dynamic',
      currentSize: virtualSize,
      dataOffset: 512,
      uuid: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0',
      creatorApplication: 'tap\0',
    });
    expect(footer.timestamp.toISOString()).toBe('2024-05-01T12:00:00.000Z');
    expectBytes(file.subarray(file.length - 512), file.subarray(0, 512));
    const header = decodeVhdHeader(file.subarray(512, 1536), 512);
    expect(header).toMatchObject({ tableOffset: 1536, maxTableEntries: 4, blockSize: VHD_BLOCK_SIZE });
    expect(file.readUInt32BE(1536)).toBe(2048 / 512);
    expect(file.readUInt32BE(1536 + 4)).toBe(0xffffffff);
    expect(file.readUInt32BE(1536 + 8)).toBe(0xffffffff);
    expect(file.readUInt32BE(1536 + 12)).toBe((2048 + VHD_BLOCK_FOOTPRINT) / 512);
    // Bitmap all set, then data; the short last block is padded with zeros.
    expect(file.subarray(2048, 2560).every((byte) => byte === 0xff)).toBe(true);
    expectBytes(file.subarray(2560, 2560 + VHD_BLOCK_SIZE), patternBlock('w', 0));
    const last = file.subarray(2048 + VHD_BLOCK_FOOTPRINT + 512, 2048 + 2 * VHD_BLOCK_FOOTPRINT);
    expectBytes(last.subarray(0, MiB + 512), patternBlock('w', 3).subarray(0, MiB + 512));
    expect(last.subarray(MiB + 512).every((byte) => byte === 0)).toBe(true);
  });

  it('pulls blocks lazily: nothing beyond what the consumer asked for is read', async () => {
    const requested: number[] = [];
    const stream = createVhdStream({
      virtualSize: 64 * VHD_BLOCK_SIZE,
      allocatedBlocks: Array.from({ length: 64 }, (_, i) => i),
      type: 'dynamic',
      readBlock: (index) => {
        requested.push(index);
        return Promise.resolve(Buffer.alloc(VHD_BLOCK_SIZE, index));
      },
    });
    const iterator = stream[Symbol.asyncIterator]();
    let received = 0;
    while (received < 512 + 1024 + 512 + VHD_BLOCK_FOOTPRINT) {
      const next = await iterator.next();
      received += (next.value as Buffer).length;
    }
    await new Promise((resolve) => setImmediate(resolve));
    expect(requested.length).toBeLessThanOrEqual(3);
    stream.destroy();
  });

  it('writes differencing headers with parent uuid, name, timestamp, locators and partial bitmaps', async () => {
    const bitmap = Buffer.alloc(512);
    bitmap[0] = 0b1010_0000;
    const file = await collect(
      createVhdStream({
        virtualSize: 4 * MiB,
        allocatedBlocks: [1],
        type: 'differencing',
        parentUuid: '11111111-2222-3333-4444-555555555555',
        parentUnicodeName: 'base disk é.vhd',
        parentTimestamp: new Date('2023-01-02T03:04:05Z'),
        parentLocators: [{ platform: 'W2ru', path: '.\\base disk é.vhd' }],
        sectorBitmap: () => bitmap,
        readBlock: () => Promise.resolve(patternBlock('d', 1)),
      }),
    );
    const image = await VhdImage.open(bufferSource(file));
    expect(image.type).toBe('differencing');
    expect(image.header.parentUuid).toBe('11111111-2222-3333-4444-555555555555');
    expect(image.header.parentUnicodeName).toBe('base disk é.vhd');
    expect(image.header.parentTimestamp.toISOString()).toBe('2023-01-02T03:04:05.000Z');
    expect(image.parentLocatorPaths).toEqual([{ platform: 'W2ru', path: '.\\base disk é.vhd' }]);
    const block = await image.readBlock(1);
    expectBytes(block?.bitmap, bitmap);
    expectBytes(block?.data, patternBlock('d', 1));
  });

  it('refuses sizes it cannot represent and unordered block lists', () => {
    const readBlock = (): Promise<Buffer> => Promise.resolve(Buffer.alloc(VHD_BLOCK_SIZE));
    const make = (virtualSize: number, allocatedBlocks: number[]) => () =>
      createVhdStream({ virtualSize, allocatedBlocks, type: 'dynamic', readBlock });
    expect(make(1000, [])).toThrow(VhdFormatError);
    expect(make(2 ** 60, [])).toThrow(/exceeds the VHD maximum/);
    expect(make(8 * MiB, [2, 1])).toThrow(/out of order/);
    expect(make(8 * MiB, [4])).toThrow(/outside the disk/);
    expect(() =>
      createVhdStream({ virtualSize: 8 * MiB, allocatedBlocks: [], type: 'differencing', readBlock }),
    ).toThrow(/parentUuid/);
  });

  it('fails the stream with VHD_BLOCK_DATA when readBlock returns a wrong size', async () => {
    const stream = createVhdStream({
      virtualSize: 4 * MiB,
      allocatedBlocks: [0],
      type: 'dynamic',
      readBlock: () => Promise.resolve(Buffer.alloc(100)),
    });
    await expect(collect(stream)).rejects.toMatchObject({ code: 'VHD_BLOCK_DATA' });
  });

  it('stops with an AbortError when its signal aborts', async () => {
    const controller = new AbortController();
    const stream = createVhdStream({
      virtualSize: 16 * MiB,
      allocatedBlocks: [0, 1, 2, 3],
      type: 'dynamic',
      signal: controller.signal,
      readBlock: (index) => {
        if (index === 1) controller.abort();
        return Promise.resolve(Buffer.alloc(VHD_BLOCK_SIZE));
      },
    });
    await expect(collect(stream)).rejects.toMatchObject({ name: 'AbortError' });
  });
  it('streams a 2 TiB disk with two blocks without holding more than its BAT', async () => {
    const virtualSize = 2 * 1024 ** 4;
    const last = virtualSize / VHD_BLOCK_SIZE - 1;
    const stream = createVhdStream({
      virtualSize,
      allocatedBlocks: [0, last],
      type: 'dynamic',
      readBlock: (index) => Promise.resolve(patternBlock('big', index)),
    });
    const items: (VhdStreamMetadata | VhdStreamBlock)[] = [];
    let bytes = 0;
    const counted = (async function* () {
      for await (const chunk of stream) {
        bytes += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
    })();
    for await (const item of parseVhdStream(counted)) items.push(item);
    expect(bytes).toBe(vhdStreamLength({ virtualSize, allocatedBlocks: [0, last] }));
    expect(bytes).toBe(512 + 1024 + 4 * MiB + 2 * VHD_BLOCK_FOOTPRINT + 512);
    expect(items.map((item) => (item.type === 'block' ? item.index : 'metadata'))).toEqual([
      'metadata',
      0,
      last,
    ]);
    expectBytes((items[2] as VhdStreamBlock).data, patternBlock('big', last));
  });
});

describe('parseVhdStream', () => {
  it('round-trips what createVhdStream writes, whatever the chunking', async () => {
    const virtualSize = 9 * MiB;
    const allocated = [0, 2, 4];
    const file = await collect(
      createVhdStream({
        virtualSize,
        allocatedBlocks: allocated,
        type: 'dynamic',
        readBlock: (index) =>
          Promise.resolve(index === 4 ? patternBlock('p', 4).subarray(0, MiB) : patternBlock('p', index)),
      }),
    );
    for (const chunkSize of [1, 511, 4096, 3 * MiB]) {
      // Chunk size 1 is slow on the full file: only feed the metadata through it.
      const input = chunkSize === 1 ? file.subarray(0, 2048) : file;
      const items: (VhdStreamMetadata | VhdStreamBlock)[] = [];
      const parse = async (): Promise<void> => {
        for await (const item of parseVhdStream(chunkedStream(input, chunkSize))) items.push(item);
      };
      if (chunkSize === 1) {
        await expect(parse()).rejects.toMatchObject({ code: 'VHD_TRUNCATED' });
        expect(items[0]?.type).toBe('metadata');
        continue;
      }
      await parse();
      const [metadata, ...blocks] = items;
      expect(metadata).toMatchObject({ type: 'metadata', blockCount: 5, allocatedBlocks: allocated });
      expect(blocks.map((block) => (block.type === 'block' ? block.index : -1))).toEqual(allocated);
      const last = blocks[2] as VhdStreamBlock;
      expectBytes(last.data.subarray(0, MiB), patternBlock('p', 4).subarray(0, MiB));
      expectBytes((blocks[1] as VhdStreamBlock).data, patternBlock('p', 2));
    }
  });

  it('skips zero padding before the trailing footer but refuses data after it', async () => {
    const file = await collect(
      createVhdStream({
        virtualSize: 2 * MiB,
        allocatedBlocks: [0],
        type: 'dynamic',
        readBlock: () => Promise.resolve(patternBlock('t', 0)),
      }),
    );
    const footer = file.subarray(file.length - 512);
    const padded = Buffer.concat([file.subarray(0, file.length - 512), Buffer.alloc(1024), footer]);
    const items = [];
    for await (const item of parseVhdStream(chunkedStream(padded))) items.push(item.type);
    expect(items).toEqual(['metadata', 'block']);
    const extra = Buffer.concat([file, Buffer.from('garbage')]);
    await expect(collect(parseDrain(extra))).rejects.toMatchObject({ code: 'VHD_TRAILING_DATA' });
  });
});

async function* parseDrain(file: Buffer): AsyncGenerator<Buffer> {
  for await (const item of parseVhdStream(chunkedStream(file))) if (item.type === 'block') yield item.data;
}
