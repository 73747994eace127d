import { BlockBufferPool, VHD_BLOCK_SIZE, createVhdStream, openVhdStream } from './index';
import { chunkedStream, collect, expectBytes, patternBlock } from './vhd.fixture';

const MiB = 1024 * 1024;

async function vhdFile(blocks: readonly number[], virtualSize: number): Promise<Buffer> {
  return collect(
    createVhdStream({
      virtualSize,
      allocatedBlocks: blocks,
      type: 'dynamic',
      readBlock: (index) => Promise.resolve(patternBlock('pool', index)),
    }),
  );
}

describe('openVhdStream with block buffers', () => {
  it('reads every block into a reused buffer, given back through release', async () => {
    const allocated = [0, 1, 3, 4, 5, 7, 8, 9];
    const file = await vhdFile(allocated, 10 * VHD_BLOCK_SIZE);
    // Chunk sizes that do not divide a block: blocks span several source chunks.
    for (const chunkSize of [65_531, 3 * MiB + 7]) {
      const pool = new BlockBufferPool(VHD_BLOCK_SIZE, 2);
      const { blocks } = await openVhdStream(chunkedStream(file, chunkSize), { blockBuffers: pool });
      const seen: number[] = [];
      for await (const block of blocks) {
        expect(pool.inUse).toBe(1);
        expectBytes(block.data, patternBlock('pool', block.index));
        seen.push(block.index);
        block.release?.();
        expect(() => block.release?.()).toThrow(/released twice/);
      }
      expect(seen).toEqual(allocated);
      expect(pool.inUse).toBe(0);
      expect(pool.allocated).toBe(1);
    }
  });

  it('hands each block its frame when the buffers have headroom, from the given allocator', async () => {
    const file = await vhdFile([0, 2, 3], 4 * VHD_BLOCK_SIZE);
    const made: number[] = [];
    const pool = new BlockBufferPool(VHD_BLOCK_SIZE, 2, {
      headroom: 16,
      allocate: (length) => {
        made.push(length);
        return Buffer.alloc(length + 100); // room after it is fine
      },
    });
    const { blocks } = await openVhdStream(chunkedStream(file, 65_531), { blockBuffers: pool });
    for await (const block of blocks) {
      const frame = block.frame;
      if (frame === undefined) throw new Error(`block ${block.index} has no frame`);
      // The data is the frame's end, after the headroom, in the same memory.
      expect([
        frame.length,
        block.data.byteOffset - frame.byteOffset,
        frame.buffer === block.data.buffer,
      ]).toEqual([16 + VHD_BLOCK_SIZE, 16, true]);
      expectBytes(frame.subarray(16), patternBlock('pool', block.index));
      block.release?.();
      // Given back: no frame for a buffer the pool does not lend.
      expect(pool.frameOf(block.data)).toBeUndefined();
    }
    expect(made).toEqual([16 + VHD_BLOCK_SIZE]);
    // Without headroom, no frame.
    const plain = new BlockBufferPool(VHD_BLOCK_SIZE, 1);
    const opened = await openVhdStream(chunkedStream(file), { blockBuffers: plain });
    for await (const block of opened.blocks) {
      expect(block.frame).toBeUndefined();
      block.release?.();
    }
    // An allocator that gives less than asked is refused, naming the sizes.
    const short = new BlockBufferPool(VHD_BLOCK_SIZE, 1, {
      headroom: 16,
      allocate: () => Buffer.alloc(VHD_BLOCK_SIZE),
    });
    expect(() => short.acquire()).toThrow(/allocator made 2097152 bytes at offset 0, not 2097168 at 0/);
  });

  it('without a release the next block gets a buffer of its own (a held block is never overwritten)', async () => {
    const file = await vhdFile([0, 1, 2], 3 * VHD_BLOCK_SIZE);
    const pool = new BlockBufferPool(VHD_BLOCK_SIZE, 4);
    const { blocks } = await openVhdStream(chunkedStream(file), { blockBuffers: pool });
    const held = [];
    for await (const block of blocks) held.push(block);
    for (const block of held) expectBytes(block.data, patternBlock('pool', block.index));
    expect(pool.allocated).toBe(3);
    for (const block of held) block.release?.();
    expect(pool.idle).toBe(3);
  });

  it('a stream cut inside a block fails with VHD_TRUNCATED and gives its buffer back', async () => {
    const file = await vhdFile([0, 1], 2 * VHD_BLOCK_SIZE);
    const cut = file.subarray(0, file.length - 512 - MiB);
    const pool = new BlockBufferPool(VHD_BLOCK_SIZE, 2);
    const { blocks } = await openVhdStream(chunkedStream(cut), { blockBuffers: pool });
    const first = await blocks.next();
    if (first.done === true) throw new Error('expected block 0');
    first.value.release?.();
    await expect(blocks.next()).rejects.toMatchObject({ code: 'VHD_TRUNCATED' });
    expect(pool.inUse).toBe(0);
  });

  it('refuses buffers of the wrong size, and a pool refuses buffers it did not lend', async () => {
    const file = await vhdFile([0], VHD_BLOCK_SIZE);
    const small = new BlockBufferPool(4096, 1);
    const { blocks } = await openVhdStream(chunkedStream(file), { blockBuffers: small });
    await expect(blocks.next()).rejects.toThrow(/block buffers must be 2097152 bytes, got 4096/);
    expect(() => small.release(Buffer.allocUnsafeSlow(4096))).toThrow(/did not lend it/);
  });
});

describe('BlockBufferPool.lends', () => {
  it('tells its own lent buffers (and views of them) from others, until they are given back', () => {
    const pool = new BlockBufferPool(1024, 1);
    const lent = pool.acquire();
    expect(pool.lends(lent)).toBe(true);
    expect(pool.lends(lent.subarray(10, 20))).toBe(true);
    expect(pool.lends(Buffer.alloc(1024))).toBe(false);
    pool.release(lent);
    expect(pool.lends(lent)).toBe(false);
  });
});
