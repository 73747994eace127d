import {
  VHD_BLOCK_SIZE,
  VhdChain,
  VhdImage,
  bufferSource,
  createRawStream,
  createRawStreamFromVhdStream,
  createVhdStream,
  createVhdStreamFromRaw,
  sectorBitmapOf,
} from './index';
import { chunkedStream, collect, expectBytes, patternBlock, patternRaw } from './vhd.fixture';

const MiB = 1024 * 1024;

async function image(options: Parameters<typeof createVhdStream>[0]): Promise<VhdImage> {
  return VhdImage.open(bufferSource(await collect(createVhdStream(options))));
}

describe('VhdChain', () => {
  const baseUuid = '3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c';
  const midUuid = '4a3b2c1d-0e9f-4a8b-9c7d-6e5f4a3b2c1d';

  async function threeLevels(): Promise<VhdImage[]> {
    return [
      await image({
        virtualSize: 6 * MiB,
        allocatedBlocks: [0, 1],
        type: 'dynamic',
        uuid: baseUuid,
        readBlock: (index) => Promise.resolve(patternBlock('L0', index)),
      }),
      await image({
        virtualSize: 6 * MiB,
        allocatedBlocks: [1],
        type: 'differencing',
        uuid: midUuid,
        parentUuid: baseUuid,
        sectorBitmap: () => sectorBitmapOf([1, 2]),
        readBlock: (index) => Promise.resolve(patternBlock('L1', index)),
      }),
      // The newest child was resized to 8 MiB and writes block 3 plus sector 2 of block 1.
      await image({
        virtualSize: 8 * MiB,
        allocatedBlocks: [1, 3],
        type: 'differencing',
        parentUuid: midUuid,
        sectorBitmap: (index) => (index === 1 ? sectorBitmapOf([2]) : undefined),
        readBlock: (index) => Promise.resolve(patternBlock('L2', index)),
      }),
    ];
  }

  it('overlays children sector by sector over their parents', async () => {
    const chain = new VhdChain(await threeLevels());
    expect(chain.virtualSize).toBe(8 * MiB);
    expect(chain.allocatedBlocks).toEqual([0, 1, 3]);
    const expected = Buffer.alloc(8 * MiB);
    patternBlock('L0', 0).copy(expected, 0);
    patternBlock('L0', 1).copy(expected, VHD_BLOCK_SIZE);
    patternBlock('L1', 1).copy(expected, VHD_BLOCK_SIZE + 512, 512, 1024);
    patternBlock('L2', 1).copy(expected, VHD_BLOCK_SIZE + 1024, 1024, 1536);
    patternBlock('L2', 3).copy(expected, 3 * VHD_BLOCK_SIZE);
    expectBytes(await collect(createRawStream(chain)), expected);
    expectBytes(
      await chain.read(VHD_BLOCK_SIZE + 500, 1100),
      expected.subarray(VHD_BLOCK_SIZE + 500, VHD_BLOCK_SIZE + 1600),
    );
    await expect(chain.read(8 * MiB - 10, 11)).rejects.toMatchObject({ code: 'VHD_RANGE' });
  });

  it('refuses images out of order or from another disk', async () => {
    const [base, mid, top] = await threeLevels();
    expect(() => new VhdChain([base, top])).toThrow(/names parent|only the base/);
    expect(() => new VhdChain([mid, base])).toThrow(/names parent|only the base/);
  });
});

describe('raw conversion', () => {
  it('raw -> VHD skips zero blocks; VHD stream -> raw restores them', async () => {
    const virtualSize = 9 * MiB + 512;
    const raw = patternRaw('raw', virtualSize, [1, 4]);
    const vhd = await collect(await createVhdStreamFromRaw(bufferSource(raw)));
    const opened = await VhdImage.open(bufferSource(vhd));
    expect(opened.allocatedBlocks).toEqual([1, 4]);
    expect(opened.virtualSize).toBe(virtualSize);
    expectBytes(await collect(createRawStreamFromVhdStream(chunkedStream(vhd))), raw);
  });

  it('pads a raw image that is not a whole number of sectors', async () => {
    const raw = patternRaw('odd', 3 * MiB, [0, 1]).subarray(0, 3 * MiB - 100);
    const vhd = await collect(await createVhdStreamFromRaw(bufferSource(raw)));
    const back = await collect(createRawStreamFromVhdStream(chunkedStream(vhd)));
    expect(back.length).toBe(3 * MiB);
    expectBytes(back.subarray(0, raw.length), raw);
    expect(back.subarray(raw.length).every((byte) => byte === 0)).toBe(true);
  });

  it('refuses a differencing VHD alone when converting to raw', async () => {
    const vhd = await collect(
      createVhdStream({
        virtualSize: 2 * MiB,
        allocatedBlocks: [],
        type: 'differencing',
        parentUuid: '3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c',
        readBlock: () => Promise.resolve(Buffer.alloc(0)),
      }),
    );
    await expect(collect(createRawStreamFromVhdStream(chunkedStream(vhd)))).rejects.toMatchObject({
      code: 'VHD_DISK_TYPE',
    });
  });
});
