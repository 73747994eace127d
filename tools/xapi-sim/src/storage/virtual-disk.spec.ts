import { scratchDir } from '@haven/testing';
import { BLOCK_SIZE } from './block.constants';
import { BlockStore } from './block.store';
import { DiskRegistry } from './disk.registry';
import type { VirtualDisk } from './virtual-disk';

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

  describe('sectors written since a base (the sector bitmap of a differencing export)', () => {
    /** The sector numbers set in a VHD sector bitmap. */
    const sectorsOf = (bitmap: Buffer | undefined): number[] | undefined => {
      if (bitmap === undefined) return undefined;
      const sectors: number[] = [];
      for (let sector = 0; sector < bitmap.length * 8; sector++)
        if (((bitmap[sector >> 3] ?? 0) & (0x80 >> (sector & 7))) !== 0) sectors.push(sector);
      return sectors;
    };
    let counter = 0;
    const snapshot = (disk: VirtualDisk) =>
      registry.cloneDisk(disk, `OpaqueRef:snap-${++counter}`, 'OpaqueRef:sr', null);

    it('marks the sectors a write touched in a block the base shares, unaligned ends included', async () => {
      const disk = registry.create('OpaqueRef:a', 'OpaqueRef:sr', 4 * BLOCK_SIZE);
      await disk.write(BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 1));
      const base = snapshot(disk);
      // Bytes 1000-1599 of block 1: sectors 1, 2 and 3.
      await disk.write(BLOCK_SIZE + 1000, Buffer.alloc(600, 2));
      await disk.write(BLOCK_SIZE + 512 * 40, Buffer.alloc(512, 3));
      expect(sectorsOf(disk.sectorsWrittenSince(base, 1))).toEqual([1, 2, 3, 40]);
    });

    it('marks only the written sectors of a block the base does not hold (the rest is zeros)', async () => {
      const disk = registry.create('OpaqueRef:a', 'OpaqueRef:sr', 4 * BLOCK_SIZE);
      const base = snapshot(disk);
      await disk.write(2 * BLOCK_SIZE + 512 * 7, Buffer.alloc(10, 4));
      expect(sectorsOf(disk.sectorsWrittenSince(base, 2))).toEqual([7]);
    });

    it('adds up the writes of every snapshot since an older base', async () => {
      const disk = registry.create('OpaqueRef:a', 'OpaqueRef:sr', 2 * BLOCK_SIZE);
      await disk.write(0, Buffer.alloc(BLOCK_SIZE, 1));
      const older = snapshot(disk);
      await disk.write(512 * 5, Buffer.alloc(512, 2));
      const newer = snapshot(disk);
      await disk.write(512 * 9, Buffer.alloc(512, 3));
      expect(sectorsOf(disk.sectorsWrittenSince(older, 0))).toEqual([5, 9]);
      expect(sectorsOf(disk.sectorsWrittenSince(newer, 0))).toEqual([9]);
      expect(sectorsOf(newer.sectorsWrittenSince(older, 0))).toEqual([5]);
    });

    it('sends the whole block when it was wholly rewritten, zeroed and written again, or its history is lost', async () => {
      const disk = registry.create('OpaqueRef:a', 'OpaqueRef:sr', 3 * BLOCK_SIZE);
      for (const block of [0, 1]) await disk.write(block * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 1));
      const base = snapshot(disk);
      await disk.write(0, Buffer.alloc(BLOCK_SIZE, 2));
      await disk.write(512, Buffer.alloc(512, 3));
      expect(disk.sectorsWrittenSince(base, 0)).toBeUndefined();
      // Zeroed (freed), then a few bytes: the rest of the block is zeros, not the base's data.
      await disk.write(BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE));
      await disk.write(BLOCK_SIZE + 512, Buffer.alloc(512, 3));
      expect(disk.sectorsWrittenSince(base, 1)).toBeUndefined();
      // A restart forgets histories (they are not persisted).
      await disk.write(2 * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 1));
      const later = snapshot(disk);
      await disk.write(2 * BLOCK_SIZE + 512, Buffer.alloc(512, 4));
      const slot = disk.slotOf(2);
      if (slot !== undefined) registry.setLineage(slot, undefined);
      expect(disk.sectorsWrittenSince(later, 2)).toBeUndefined();
    });

    it('after a restart (histories unknown), tracks writes made after it against a base sharing the block', async () => {
      const disk = registry.create('OpaqueRef:a', 'OpaqueRef:sr', BLOCK_SIZE);
      await disk.write(0, Buffer.alloc(BLOCK_SIZE, 1));
      const base = snapshot(disk);
      const shared = disk.slotOf(0);
      if (shared !== undefined) registry.setLineage(shared, undefined);
      await disk.write(512 * 3, Buffer.alloc(512, 2));
      expect(sectorsOf(disk.sectorsWrittenSince(base, 0))).toEqual([3]);
    });

    it('does not trust a base whose shared block was since written in place by its last user', async () => {
      const disk = registry.create('OpaqueRef:a', 'OpaqueRef:sr', BLOCK_SIZE);
      await disk.write(0, Buffer.alloc(BLOCK_SIZE, 1));
      const base = snapshot(disk);
      await disk.write(512, Buffer.alloc(512, 2));
      // A clone of the base, which then goes: the clone alone holds the block the disk came from.
      const clone = registry.cloneDisk(base, 'OpaqueRef:clone', 'OpaqueRef:sr', null);
      registry.destroy(base.vdiRef);
      await clone.write(512 * 20, Buffer.alloc(512, 5));
      expect(sectorsOf(clone.sectorsWrittenSince(base, 0))).toBeUndefined();
      expect(disk.sectorsWrittenSince(clone, 0)).toBeUndefined();
    });
  });
});
