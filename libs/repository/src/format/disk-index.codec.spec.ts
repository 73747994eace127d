import { randomBytes } from 'node:crypto';
import { DiskIndex } from './disk-index.codec';
import { EnvelopeError } from './object.envelope';

const BLOCK = 2 * 1024 * 1024;

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
});
