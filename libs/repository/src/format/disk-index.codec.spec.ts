import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DiskIndex } from './disk-index.codec';
import { EnvelopeError } from './object.envelope';

const BLOCK = 2 * 1024 * 1024;

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

describe('DiskIndex', () => {
  it('round-trips a sparse index with a short last block', () => {
    const size = 37 * BLOCK + 4096;
    const index = new DiskIndex(size, BLOCK);
    expect(index.blockCount).toBe(38);
    expect(index.blockLength(37)).toBe(4096);
    const ids = new Map<number, Buffer>([
      [0, randomBytes(32)],
      [9, randomBytes(32)],
      [37, randomBytes(32)],
    ]);
    for (const [block, id] of ids) index.set(block, id);
    const encoded = index.encode();
    expect(encoded.length).toBe(28 + 5 + 3 * 32);
    const decoded = DiskIndex.decode(encoded);
    expect(decoded.virtualSize).toBe(size);
    expect([...decoded.allocatedBlocks()]).toEqual([0, 9, 37]);
    for (const [block, id] of ids) expect(decoded.get(block)?.equals(id)).toBe(true);
    expect(decoded.get(1)).toBeUndefined();
  });

  it('rejects truncated or inconsistent bytes', () => {
    const index = new DiskIndex(4 * BLOCK, BLOCK);
    index.set(2, randomBytes(32));
    const encoded = index.encode();
    expect(() => DiskIndex.decode(encoded.subarray(0, encoded.length - 1))).toThrow(EnvelopeError);
    const badBitmap = Buffer.from(encoded);
    badBitmap[28] = 0xf0;
    expect(() => DiskIndex.decode(badBitmap)).toThrow(EnvelopeError);
    const badMagic = Buffer.from(encoded);
    badMagic[0] = 0;
    expect(() => DiskIndex.decode(badMagic)).toThrow(/magic/);
  });

  it('keeps its own copy of each id, counts what is allocated, and refuses a block outside the disk', () => {
    const index = new DiskIndex(8 * BLOCK, BLOCK);
    const id = randomBytes(32);
    index.set(3, id);
    index.set(5, randomBytes(32));
    const expected = Buffer.from(id);
    // Neither the buffer given nor the one returned is the index's own record.
    id.fill(0);
    index.get(3)?.fill(0);
    expect(index.get(3)?.equals(expected)).toBe(true);
    expect(index.allocatedCount).toBe(2);
    index.set(3, randomBytes(32));
    expect(index.allocatedCount).toBe(2);
    index.set(3, undefined);
    index.set(4, undefined);
    expect(index.allocatedCount).toBe(1);
    expect([index.has(3), index.has(4), index.has(5)]).toEqual([false, false, true]);
    expect([...index.allocatedBlocks()]).toEqual([5]);
    expect(() => index.set(8, randomBytes(32))).toThrow('block 8 is outside a disk index of 8 blocks');
    expect(() => index.set(0, randomBytes(31))).toThrow('a chunk id is 32 bytes, got 31');
  });

  it('takes 32 bytes per block, not an object per allocated block', () => {
    // 2 TiB, every block allocated, each id a buffer of its own as a decoder or hasher hands them:
    // 32 MiB of records (the index kept those buffers before: ~137 MiB).
    const blocks = 1024 * 1024;
    const held = (): number => {
      collectGarbage();
      const usage = process.memoryUsage();
      return usage.heapUsed + usage.arrayBuffers;
    };
    const before = held();
    const index = new DiskIndex(blocks * BLOCK, BLOCK);
    for (let block = 0; block < blocks; block++) {
      const id = Buffer.alloc(32);
      id.writeUInt32BE(block);
      index.set(block, id);
    }
    const grown = held() - before;
    expect(index.allocatedCount).toBe(blocks);
    // About the 32 MiB of records: the rest of the process moves the heap by a few hundred KiB.
    expect(grown).toBeGreaterThan(30 * 1024 * 1024);
    expect(grown).toBeLessThan(36 * 1024 * 1024);
  });
});
