import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DiskIndex } from './disk-index.codec';
import { EnvelopeError } from './object.envelope';

const BLOCK = 2 * 1024 * 1024;
const MIB = 1024 * 1024;
const ROOT = join(__dirname, '..', '..', '..', '..');

/**
 * Bytes a DiskIndex of `blocks` full blocks holds, measured in a fresh Node process: in the shared
 * Jest worker, memory of other files freed during the fill moved the figure (24 MiB measured once
 * for 32 MiB held).
 */
async function memoryOfFilledIndex(blocks: number): Promise<{ grown: number; allocated: number }> {
  const script = join(__dirname, '..', 'testing', 'disk-index-memory.script.ts');
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--expose-gc', join(ROOT, 'bin/run.js'), script, String(blocks)],
    { cwd: ROOT, timeout: 60_000 },
  );
  return JSON.parse(stdout) as { grown: number; allocated: number };
}

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

  it('takes a block as another index has it, id or absence, and keeps it when that index changes', () => {
    const base = new DiskIndex(4 * BLOCK, BLOCK);
    const id = randomBytes(32);
    base.set(1, id);
    const next = new DiskIndex(4 * BLOCK, BLOCK);
    next.set(2, randomBytes(32));
    next.setFrom(base, 1);
    next.setFrom(base, 2);
    base.set(1, randomBytes(32));
    expect(next.get(1)?.equals(id)).toBe(true);
    expect(next.has(2)).toBe(false);
    expect(next.allocatedCount).toBe(1);
  });

  it('takes 32 bytes per block, not an object per allocated block', async () => {
    // 2 TiB, every block allocated: 32 MiB of records and a 128 KiB bitmap (the index kept the
    // buffers it was given before: ~137 MiB). A fresh process measures 32.0-32.2 MiB.
    const blocks = 1024 * 1024;
    const { grown, allocated } = await memoryOfFilledIndex(blocks);
    expect(allocated).toBe(blocks);
    expect(grown).toBeGreaterThan(31 * MIB);
    expect(grown).toBeLessThan(34 * MIB);
  });
});
