import { scratchDir } from '@haven/testing';
import { BLOCK_SIZE } from './block.constants';
import { BlockStore } from './block.store';
import { DiskRegistry } from './disk.registry';

describe('VirtualDisk over the block store', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let blocks: BlockStore;
  let registry: DiskRegistry;

  beforeEach(async () => {
    dir = await scratchDir('haven-xapi-sim-disk-');
    blocks = await BlockStore.open(dir.path);
    registry = new DiskRegistry(blocks, { capacity: () => 1024 * BLOCK_SIZE, usageChanged: () => undefined });
  });

  afterEach(async () => {
    await blocks.close();
    await dir.cleanup();
  });

  it('never shows a reused slot stale bytes after a partial write', async () => {
    const disk = registry.create('OpaqueRef:a', 'OpaqueRef:sr', 4 * BLOCK_SIZE);
    await disk.write(0, Buffer.alloc(BLOCK_SIZE, 0xab));
    await disk.write(0, Buffer.alloc(BLOCK_SIZE)); // frees the slot
    expect(disk.allocatedBlocks()).toEqual([]);
    await disk.write(2 * BLOCK_SIZE + 100, Buffer.from('hello'));
    const block = await disk.read(2 * BLOCK_SIZE, BLOCK_SIZE);
    const expected = Buffer.alloc(BLOCK_SIZE);
    expected.write('hello', 100);
    expect(block.equals(expected)).toBe(true);
  });

  it('copies a shared block before writing into it, leaving the clone untouched', async () => {
    const disk = registry.create('OpaqueRef:a', 'OpaqueRef:sr', 2 * BLOCK_SIZE);
    await disk.write(0, Buffer.alloc(BLOCK_SIZE, 1));
    const clone = registry.cloneDisk(disk, 'OpaqueRef:b', 'OpaqueRef:sr', null);
    expect(blocks.usedSlots).toBe(1);
    await disk.write(10, Buffer.from([9, 9]));
    expect(blocks.usedSlots).toBe(2);
    expect((await clone.read(0, 16)).equals(Buffer.alloc(16, 1))).toBe(true);
    expect([...(await disk.read(8, 6))]).toEqual([1, 1, 9, 9, 1, 1]);
    registry.destroy('OpaqueRef:b');
    expect(blocks.usedSlots).toBe(1);
  });

  it('refuses writes past the virtual size with VDI_IO_ERROR', () => {
    const disk = registry.create('OpaqueRef:a', 'OpaqueRef:sr', BLOCK_SIZE);
    expect(() => disk.write(BLOCK_SIZE - 1, Buffer.alloc(2))).toThrow(
      expect.objectContaining({ code: 'VDI_IO_ERROR' }) as Error,
    );
  });
});
