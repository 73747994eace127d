import { randomBytes } from 'node:crypto';
import { SortedChunkIds } from './sorted-chunk-ids';

function ids(count: number): Buffer[] {
  return Array.from({ length: count }, () => randomBytes(32));
}

describe('SortedChunkIds', () => {
  it('finds every id added in ascending order (a listing of chunks/), and no other', () => {
    const added = ids(5000).sort(Buffer.compare);
    const set = new SortedChunkIds();
    for (const id of added) set.add(id);
    expect(set.size).toBe(5000);
    expect(added.every((id) => set.has(id))).toBe(true);
    expect(ids(2000).some((id) => set.has(id))).toBe(false);
  });

  it('finds every id of a long ascending listing (appended merge after merge), and no other', () => {
    const added = ids(200_000).sort(Buffer.compare);
    const set = new SortedChunkIds();
    for (const [at, id] of added.entries()) {
      set.add(id);
      // Lookups between the merges: in the records, or still waiting.
      if (at % 20_011 === 0) expect(added.slice(0, at + 1).every((seen) => set.has(seen))).toBe(true);
    }
    expect(set.size).toBe(200_000);
    expect(added.every((id, position) => set.positionOf(id) === position)).toBe(true);
    expect(ids(5000).some((id) => set.has(id))).toBe(false);
  });

  it('appends ascending ids without a merge, refuses one out of order, and mixes with add', () => {
    const listed = ids(100_000).sort(Buffer.compare);
    const set = new SortedChunkIds();
    for (const id of listed.slice(0, 50_000)) expect(set.appendAscending(id)).toBe(true);
    // Out of order, or already held: refused, nothing added.
    expect(set.appendAscending(listed[10])).toBe(false);
    expect(set.appendAscending(listed[49_999])).toBe(false);
    expect(set.size).toBe(50_000);
    expect(listed.slice(0, 50_000).every((id, position) => set.positionOf(id) === position)).toBe(true);
    expect(set.has(listed[50_000])).toBe(false);
    // Appends after lookups, then ids in any order on top: all found, in order.
    for (const id of listed.slice(50_000, 80_000)) expect(set.appendAscending(id)).toBe(true);
    expect(set.has(listed[79_999])).toBe(true);
    for (const id of listed.slice(80_000).reverse()) set.add(id);
    for (const id of listed.slice(0, 100)) set.add(id);
    expect(set.size).toBe(100_000);
    expect([...set].map((id) => id.toString('hex'))).toEqual(listed.map((id) => id.toString('hex')));
    expect(ids(2000).some((id) => set.has(id))).toBe(false);
  });

  it('finds ids added in any order, and again after more come out of order', () => {
    const added = ids(3000);
    const set = new SortedChunkIds();
    for (const id of added) set.add(id);
    expect(added.every((id) => set.has(id))).toBe(true);
    expect(ids(1000).some((id) => set.has(id))).toBe(false);
    // Still right after more ids come, out of order again.
    const more = ids(500);
    for (const id of more) set.add(id);
    expect([...added, ...more].every((id) => set.has(id))).toBe(true);
  });

  it('orders ids that share their first bytes (one bucket of the sort)', () => {
    const sharing = (): Buffer => Buffer.concat([Buffer.from([0xab, 0xcd]), randomBytes(30)]);
    const added = Array.from({ length: 300 }, sharing);
    const set = new SortedChunkIds();
    for (const id of added) set.add(id);
    expect(added.every((id) => set.has(id))).toBe(true);
    expect(Array.from({ length: 300 }, sharing).some((id) => set.has(id))).toBe(false);
  });

  it('orders ids that share their first eight bytes or more (past the inline comparison)', () => {
    const prefix = randomBytes(12);
    const added = Array.from({ length: 400 }, (_, i) =>
      Buffer.concat([prefix.subarray(0, 8 + (i % 5)), randomBytes(24 - (i % 5))]),
    );
    const set = new SortedChunkIds();
    for (const id of added) set.add(id);
    for (const id of added) set.add(id);
    expect(set.size).toBe(400);
    expect([...set].map((id) => id.toString('hex'))).toEqual(added.map((id) => id.toString('hex')).sort());
    expect(added.every((id) => set.has(id))).toBe(true);
    const stranger = Buffer.concat([prefix.subarray(0, 8), randomBytes(24)]);
    expect(set.has(stranger)).toBe(false);
  });

  it('tells ids apart that differ in their last byte only, and finds nothing when empty', () => {
    const set = new SortedChunkIds();
    const id = Buffer.alloc(32, 0x11);
    expect(set.has(id)).toBe(false);
    set.add(id);
    const neighbour = Buffer.from(id);
    neighbour[31] = 0x12;
    expect(set.has(id)).toBe(true);
    expect(set.has(neighbour)).toBe(false);
  });

  it('holds each id once, however often and in whatever order it is added (the indexes of many restore points)', () => {
    // Past the pending run's merge threshold more than once, repeats inside one pending run, and
    // repeats of ids already merged: the same answers as a Set of hex strings.
    const distinct = ids(150_000);
    const model = new Set<string>();
    const set = new SortedChunkIds();
    let state = 7;
    const nextRandom = (): number => {
      state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
      return state;
    };
    for (let i = 0; i < 400_000; i++) {
      const id = distinct[nextRandom() % distinct.length];
      // add answers whether the id is new, as a Set's has-then-add would.
      expect(set.add(id)).toBe(!model.has(id.toString('hex')));
      model.add(id.toString('hex'));
      if (i % 50_000 === 0) expect(set.size).toBe(model.size);
    }
    expect(set.size).toBe(model.size);
    const listed = [...set].map((id) => id.toString('hex'));
    expect(listed).toEqual([...model].sort());
    expect(distinct.every((id) => set.has(id) === model.has(id.toString('hex')))).toBe(true);
    expect(set.idAt(0).toString('hex')).toBe(listed[0]);
    expect(set.idAt(listed.length - 1).toString('hex')).toBe(listed.at(-1));
    expect(() => set.idAt(listed.length)).toThrow(`no id at position ${listed.length} of ${listed.length}`);
  });

  it("reads ids in place from a larger buffer (a disk index's records)", () => {
    const records = Buffer.concat(ids(3));
    const set = new SortedChunkIds();
    set.addFrom(records, 32);
    set.addFrom(records, 32);
    expect(set.size).toBe(1);
    expect(set.hasAt(records, 32)).toBe(true);
    expect(set.hasAt(records, 0)).toBe(false);
    expect(set.has(records.subarray(32, 64))).toBe(true);
    expect(() => set.addFrom(records, 80)).toThrow('no 32-byte chunk id at offset 80 of 96 bytes');
  });

  it('takes only 32-byte ids', () => {
    const set = new SortedChunkIds();
    expect(() => set.add(Buffer.alloc(31))).toThrow('a chunk id is 32 bytes, got 31');
    expect(set.has(Buffer.alloc(33))).toBe(false);
  });
});
