import { randomBytes } from 'node:crypto';
import localRemote from '@haven/remote-local';
import { initRepository, type DiskBlock, type Repository } from '@haven/repository';
import { scratchDir } from '@haven/testing';
import { sectorBitmapOf, VHD_BLOCK_SIZE, VHD_SECTOR_SIZE, type VhdStreamBlock } from '@haven/vhd';
import type { RemoteStore } from '@haven/remote-sdk';
import { wholeBlocks } from './whole-block.merger';

const SIZE = 2 * VHD_BLOCK_SIZE + 3 * VHD_SECTOR_SIZE; // the last block is 3 sectors long

async function collect(source: AsyncIterable<DiskBlock>): Promise<DiskBlock[]> {
  const blocks: DiskBlock[] = [];
  for await (const block of source) blocks.push(block);
  return blocks;
}

async function* exported(blocks: VhdStreamBlock[]): AsyncGenerator<VhdStreamBlock> {
  for (const block of blocks) yield await Promise.resolve(block);
}

describe('whole blocks from exported VHD blocks', () => {
  let folder: { path: string; cleanup: () => Promise<void> };
  let store: RemoteStore;
  let repository: Repository;
  const base = [randomBytes(VHD_BLOCK_SIZE), randomBytes(VHD_BLOCK_SIZE), randomBytes(3 * VHD_SECTOR_SIZE)];
  let baseId = '';

  beforeAll(async () => {
    folder = await scratchDir('haven-merger-');
    store = await localRemote.create({ path: folder.path }, { name: 'merger' });
    repository = await initRepository(store, { compression: { codec: 'none' } });
    const writer = await repository.createRestorePointWriter({ vm: { uuid: 'vm-1', name: 'vm' } });
    await writer.writeDisk(
      { key: '0', virtualSize: SIZE },
      base.map((data, index) => ({ index, data })),
    );
    baseId = (await writer.commit()).id;
  });

  afterAll(async () => {
    await store.close();
    await folder.cleanup();
  });

  it('fills sectors absent from a partial block with the base restore point, keeps present ones', async () => {
    const reader = (await repository.openRestorePoint(baseId)).disk('0');
    const data = randomBytes(VHD_BLOCK_SIZE);
    const [merged] = await collect(
      wholeBlocks(
        exported([{ type: 'block', index: 1, bitmap: sectorBitmapOf([0, 7, 4095]), data }]),
        SIZE,
        reader,
      ),
    );
    expect(merged.index).toBe(1);
    const expected = Buffer.from(base[1]);
    for (const sector of [0, 7, 4095])
      data.copy(expected, sector * VHD_SECTOR_SIZE, sector * VHD_SECTOR_SIZE, (sector + 1) * VHD_SECTOR_SIZE);
    expect(merged.data.equals(expected)).toBe(true);
  });

  it('without a base (full export), absent sectors are zeros', async () => {
    const data = randomBytes(VHD_BLOCK_SIZE);
    const [merged] = await collect(
      wholeBlocks(
        exported([{ type: 'block', index: 0, bitmap: sectorBitmapOf([1]), data }]),
        SIZE,
        undefined,
      ),
    );
    const expected = Buffer.alloc(VHD_BLOCK_SIZE);
    data.copy(expected, VHD_SECTOR_SIZE, VHD_SECTOR_SIZE, 2 * VHD_SECTOR_SIZE);
    expect(merged.data.equals(expected)).toBe(true);
  });

  it('passes whole blocks through and cuts the last block to the disk end', async () => {
    const full = sectorBitmapOf(Array.from({ length: 4096 }, (_, sector) => sector));
    const first = randomBytes(VHD_BLOCK_SIZE);
    const last = randomBytes(VHD_BLOCK_SIZE);
    const blocks = await collect(
      wholeBlocks(
        exported([
          { type: 'block', index: 0, bitmap: full, data: first },
          { type: 'block', index: 2, bitmap: full, data: last },
        ]),
        SIZE,
        undefined,
      ),
    );
    expect(blocks.map((block) => [block.index, block.data.length])).toEqual([
      [0, VHD_BLOCK_SIZE],
      [2, 3 * VHD_SECTOR_SIZE],
    ]);
    expect(blocks[0].data.equals(first)).toBe(true);
    expect(blocks[1].data.equals(last.subarray(0, 3 * VHD_SECTOR_SIZE))).toBe(true);
  });
});
