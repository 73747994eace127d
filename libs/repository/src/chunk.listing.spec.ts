import { randomBytes } from 'node:crypto';
import { ChunkListing } from './chunk.listing';
import { RepositoryError } from './repository.errors';

function ascendingIds(count: number): Buffer[] {
  return Array.from({ length: count }, () => randomBytes(32)).sort(Buffer.compare);
}

describe('ChunkListing', () => {
  it("keeps each chunk's size and time at its id's position, past the growth of its arrays", () => {
    const ids = ascendingIds(5000);
    const listing = new ChunkListing('nas');
    ids.forEach((id, i) => listing.add(id, 1000 + i, new Date(1_700_000_000_000 + i)));
    expect(listing.size).toBe(5000);
    expect(listing.totalBytes).toBe(5000 * 1000 + (4999 * 5000) / 2);
    for (const i of [0, 1023, 1024, 2500, 4999]) {
      const id = ids[i];
      expect(listing.positionOf(id)).toBe(i);
      expect(listing.sizeOf(id)).toBe(1000 + i);
      expect(listing.idAt(i).equals(id)).toBe(true);
      expect(listing.sizeAt(i)).toBe(1000 + i);
      expect(listing.modifiedAt(i)).toBe(1_700_000_000_000 + i);
    }
    const other = randomBytes(32);
    expect(listing.has(other)).toBe(ids.some((id) => id.equals(other)));
    expect(listing.sizeOf(Buffer.alloc(32, 0xff))).toBeUndefined();
    expect([...listing.ids()].map((id) => id.toString('hex'))).toEqual(ids.map((id) => id.toString('hex')));
  });

  it('refuses a listing out of key order, naming the remote and both chunks', () => {
    const [first, second] = ascendingIds(2) as [Buffer, Buffer];
    const listing = new ChunkListing('nas');
    listing.add(second, 1, new Date());
    expect(() => listing.add(first, 1, new Date())).toThrow(RepositoryError);
    expect(() => listing.add(first, 1, new Date())).toThrow(
      `remote nas listed chunk ${first.toString('hex')} after ${second.toString('hex')}: a remote must list keys in ascending order`,
    );
    expect(() => listing.add(second, 1, new Date())).toThrow('a remote must list keys in ascending order');
    expect(listing.size).toBe(1);
  });
});
