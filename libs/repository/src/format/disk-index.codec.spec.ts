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
async function memoryOfIndex(
  mode: 'filled' | 'sparse' | 'decoded' | 'inherited',
  blocks: number,
  written = 0,
): Promise<{ grown: number; allocated: number }> {
  const script = join(__dirname, '..', 'testing', 'disk-index-memory.script.ts');
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--expose-gc', join(ROOT, 'bin/run.js'), script, mode, String(blocks), String(written)],
    { cwd: ROOT, timeout: 60_000 },
  );
  return JSON.parse(stdout) as { grown: number; allocated: number };
}

/** A disk index as a plain map, to check DiskIndex against. */
class IndexModel {
  readonly ids = new Map<number, Buffer>();
  constructor(readonly virtualSize: number) {}
  get blockCount(): number {
    return Math.ceil(this.virtualSize / BLOCK);
  }
  blockLength(block: number): number {
    return Math.min(BLOCK, this.virtualSize - block * BLOCK);
  }
  inheriting(virtualSize: number): IndexModel {
    const next = new IndexModel(virtualSize);
    for (const [block, id] of this.ids)
      if (block < next.blockCount && this.blockLength(block) === next.blockLength(block))
        next.ids.set(block, id);
    return next;
  }
}

/** Deterministic, so a failure replays. */
function randomOf(seed: number): (below: number) => number {
  let state = seed;
  return (below) => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % below;
  };
}

function expectSame(index: DiskIndex, model: IndexModel): void {
  expect(index.blockCount).toBe(model.blockCount);
  const blocks = [...model.ids.keys()].sort((a, b) => a - b);
  expect([...index.allocatedBlocks()]).toEqual(blocks);
  expect(index.allocatedCount).toBe(blocks.length);
  expect(index.allocatedBytes()).toBe(blocks.reduce((sum, block) => sum + model.blockLength(block), 0));
  const visited: string[] = [];
  index.forEachChunkId((records, offset) => visited.push(records.toString('hex', offset, offset + 32)));
  expect(visited).toEqual(blocks.map((block) => model.ids.get(block)?.toString('hex')));
  const got: (string | undefined)[] = [];
  const expected: (string | undefined)[] = [];
  for (let block = 0; block < model.blockCount; block++) {
    got.push(index.get(block)?.toString('hex'));
    expected.push(model.ids.get(block)?.toString('hex'));
  }
  expect(got).toEqual(expected);
  const decoded = DiskIndex.decode(index.encode());
  expect([...decoded.chunkIds()].map((id) => id.toString('hex'))).toEqual(visited);
}

/** Sets or clears `count` random blocks of both. */
function scribble(
  index: DiskIndex,
  model: IndexModel,
  count: number,
  random: (below: number) => number,
): void {
  for (let n = 0; n < count; n++) {
    const block = random(model.blockCount);
    if (random(4) === 0) {
      index.set(block, undefined);
      model.ids.delete(block);
    } else {
      const id = randomBytes(32);
      index.set(block, id);
      model.ids.set(block, Buffer.from(id));
    }
  }
}

describe('DiskIndex', () => {
  it('matches a plain map through writes, decoding, inheriting at other sizes and writes on both sides', () => {
    for (let seed = 1; seed <= 12; seed++) {
      const random = randomOf(seed);
      // Sizes around page (256 blocks) and byte (8 blocks) edges, some with a short last block.
      const sizeOf = (): number =>
        (250 + random(600)) * BLOCK - (random(2) === 0 ? 0 : 4096 * (1 + random(100)));
      let model = new IndexModel(sizeOf());
      let index = new DiskIndex(model.virtualSize, BLOCK);
      scribble(index, model, 400, random);
      expectSame(index, model);
      for (let generation = 0; generation < 3; generation++) {
        const base = DiskIndex.decode(index.encode());
        const baseModel = model;
        expectSame(base, baseModel);
        const size = random(3) === 0 ? sizeOf() : baseModel.virtualSize;
        // From the decoded base (ids shared) or from the index written so far (pages copied).
        const source = random(2) === 0 ? base : index;
        index = DiskIndex.inheriting(source, size);
        model = baseModel.inheriting(size);
        expectSame(index, model);
        scribble(index, model, 1 + random(300), random);
        expectSame(index, model);
        // The source, written after, keeps what it had apart from its own writes, and the new index too.
        const sourceModel = new IndexModel(baseModel.virtualSize);
        for (const [block, id] of baseModel.ids) sourceModel.ids.set(block, id);
        scribble(source, sourceModel, 50, random);
        expectSame(source, sourceModel);
        expectSame(index, model);
      }
    }
  });

  it('refuses an encoded index with bits set past its last block', () => {
    const index = new DiskIndex(4 * BLOCK, BLOCK);
    index.set(3, randomBytes(32));
    const encoded = index.encode();
    encoded[28] = 0x18;
    expect(() => DiskIndex.decode(encoded)).toThrow('disk index bitmap has bits set past its last block');
  });

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

  it('takes 32 bytes per block, not an object per allocated block', async () => {
    // 2 TiB, every block allocated: 32 MiB of records and a 128 KiB bitmap (the index kept the
    // buffers it was given before: ~137 MiB). A fresh process measures 32.0-32.2 MiB.
    const blocks = 1024 * 1024;
    const { grown, allocated } = await memoryOfIndex('filled', blocks);
    expect(allocated).toBe(blocks);
    expect(grown).toBeGreaterThan(31 * MIB);
    expect(grown).toBeLessThan(34 * MIB);
  });

  it('costs a sparse disk only the pages of records it writes', async () => {
    // 2 TiB, 10 blocks written: a 128 KiB bitmap and one 8 KiB page (32 MiB of records before).
    const { grown, allocated } = await memoryOfIndex('sparse', 1024 * 1024, 10);
    expect(allocated).toBe(10);
    expect(grown).toBeLessThan(1 * MIB);
  });

  it('decodes in place: the ids stay in the encoded bytes', async () => {
    // 2 TiB, every block allocated: a bitmap and its ranks (~0.2 MiB), not a second 32 MiB.
    const { grown, allocated } = await memoryOfIndex('decoded', 1024 * 1024);
    expect(allocated).toBe(1024 * 1024);
    expect(grown).toBeLessThan(1 * MIB);
  });

  it('shares a decoded base with an index inheriting it, but for the pages it changes', async () => {
    // 512 blocks changed over 2 TiB: 512 pages of 8 KiB (~4.5 MiB measured), not 32 MiB.
    const { grown, allocated } = await memoryOfIndex('inherited', 1024 * 1024, 512);
    expect(allocated).toBe(1024 * 1024);
    expect(grown).toBeLessThan(8 * MIB);
  });
});
