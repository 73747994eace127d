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

  it('gives the run of positions of each first byte (a chunk folder), after adds and appends alike', () => {
    const withPrefix = (prefix: number[]): Buffer =>
      Buffer.concat([Buffer.from(prefix), randomBytes(32 - prefix.length)]);
    const added = [
      withPrefix([0x00, 0x00]),
      withPrefix([0x00, 0xff]),
      withPrefix([0x01, 0x00]),
      withPrefix([0x7f]),
      withPrefix([0xff, 0x00]),
      withPrefix([0xff, 0xff]),
      withPrefix([0xff, 0xff]),
    ];
    const expectRuns = (set: SortedChunkIds): void => {
      const sorted = [...added].sort(Buffer.compare);
      for (let byte = 0; byte < 256; byte++) {
        const { start, end } = set.positionsWithFirstByte(byte);
        const first = sorted.findIndex((id) => id[0] >= byte);
        const expectedStart = first < 0 ? sorted.length : first;
        const expectedEnd = expectedStart + sorted.filter((id) => id[0] === byte).length;
        expect([byte, start, end]).toEqual([byte, expectedStart, expectedEnd]);
      }
    };
    const inAnyOrder = new SortedChunkIds();
    for (const id of added) inAnyOrder.add(id);
    expectRuns(inAnyOrder);
    const appended = new SortedChunkIds();
    for (const id of [...added].sort(Buffer.compare)) appended.appendAscending(id);
    expectRuns(appended);
    expect(new SortedChunkIds().positionsWithFirstByte(0xff)).toEqual({ start: 0, end: 0 });
    expect(() => appended.positionsWithFirstByte(256)).toThrow('no first byte 256');
  });

  it('unites sets record by record: every id once, in order, the sets unchanged', () => {
    const shared = ids(3000);
    const [a, b, c] = [new SortedChunkIds(), new SortedChunkIds(), new SortedChunkIds()];
    const onlyA = ids(2000);
    const onlyB = ids(100);
    for (const id of [...shared, ...onlyA]) a.add(id);
    for (const id of [...onlyB, ...shared.slice(0, 1500)]) b.add(id);
    // A set with ids still pending (not merged into its records yet).
    for (const id of shared.slice(1000, 1010)) c.add(id);
    const union = SortedChunkIds.union([a, b, c, new SortedChunkIds()]);
    const expected = [...new Set([...shared, ...onlyA, ...onlyB].map((id) => id.toString('hex')))].sort();
    expect(union.size).toBe(expected.length);
    expect([...union].map((id) => id.toString('hex'))).toEqual(expected);
    expect(ids(100).some((id) => union.has(id))).toBe(false);
    expect(onlyB.every((id) => union.positionOf(id) >= 0)).toBe(true);
    expect([a.size, b.size, c.size]).toEqual([5000, 1600, 10]);
    // Adding to the union does not touch the sets it came from.
    union.add(onlyB[0]);
    const [extra] = ids(1);
    union.add(extra);
    expect([union.has(extra), a.has(extra), b.has(extra)]).toEqual([true, false, false]);
    expect(SortedChunkIds.union([]).size).toBe(0);
  });

  it('is built from the records of a larger buffer in any order, repeats once, as adding them one by one', () => {
    // A disk index's records: ids at 32-byte offsets, some repeated, some sharing their first bytes.
    const distinct = ids(20_000);
    for (const id of distinct.slice(0, 300)) id.writeUInt16BE(0x1234, 0);
    const order = Array.from({ length: 50_000 }, (_, at) => distinct[(at * 7919) % distinct.length]);
    const records = Buffer.concat(order);
    const visit = (take: (source: Buffer, offset: number) => void): void => {
      for (let at = 0; at < order.length; at++) take(records, at * 32);
    };
    const built = SortedChunkIds.fromRecords(visit);
    const added = new SortedChunkIds();
    visit((source, offset) => added.addFrom(source, offset));
    expect(built.size).toBe(20_000);
    expect([...built].map((id) => id.toString('hex'))).toEqual([...added].map((id) => id.toString('hex')));
    expect(distinct.every((id) => built.has(id))).toBe(true);
    expect(ids(2000).some((id) => built.has(id))).toBe(false);
    expect(built.positionsWithFirstByte(0x12)).toEqual(added.positionsWithFirstByte(0x12));
    // Still a set to add to.
    const later = ids(1)[0];
    expect(built.add(later)).toBe(true);
    expect(built.has(later)).toBe(true);
    expect(SortedChunkIds.fromRecords(() => undefined).size).toBe(0);
  });

  it('refuses a visitor that hands other ids the second time', () => {
    let visits = 0;
    const moving = (take: (source: Buffer, offset: number) => void): void => {
      visits++;
      for (const id of visits === 1 ? ids(50) : ids(51)) take(id, 0);
    };
    expect(() => SortedChunkIds.fromRecords(moving)).toThrow(/other ids the second time/);
  });

  it('takes hex ids, and refuses what is no id', () => {
    const hexes = ids(5).map((id) => id.toString('hex'));
    const set = SortedChunkIds.fromHex([...hexes, hexes[0]]);
    expect([...set].map((id) => id.toString('hex'))).toEqual([...hexes].sort());
    expect(() => SortedChunkIds.fromHex(['abc'])).toThrow('not a chunk id: "abc"');
    expect(() => SortedChunkIds.fromHex([`${hexes[0]?.slice(0, 62)}zz`])).toThrow('not a chunk id');
  });
});
