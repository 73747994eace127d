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

  it('finds ids added in any order (sorted once, at the first lookup)', () => {
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

  it('takes only 32-byte ids', () => {
    const set = new SortedChunkIds();
    expect(() => set.add(Buffer.alloc(31))).toThrow('a chunk id is 32 bytes, got 31');
    expect(set.has(Buffer.alloc(33))).toBe(false);
  });
});
