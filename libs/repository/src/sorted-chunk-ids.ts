/** Bytes of a chunk id (SHA-256 or HMAC-SHA256). */
const ID_LENGTH = 32;

/**
 * A set of chunk ids held as one sorted run of 32-byte records: 32 bytes per id. A repository's
 * million chunks take 32 MiB here, where a `Set` of id strings took 66 MiB and the listing's `Map`
 * of keys, sizes and dates 250 MiB more (docs/benchmarks/repository.md, "Known chunks"). Ids added
 * in ascending order (a listing of chunks/ is in key order) are taken as they come; others are
 * sorted once, at the first lookup. Lookups are a binary search.
 */
export class SortedChunkIds {
  private records = Buffer.alloc(0);
  private count = 0;
  private sorted = true;

  get size(): number {
    return this.count;
  }

  add(id: Buffer): void {
    if (id.length !== ID_LENGTH) throw new RangeError(`a chunk id is ${ID_LENGTH} bytes, got ${id.length}`);
    if (this.records.length < (this.count + 1) * ID_LENGTH) {
      const grown = Buffer.allocUnsafe(Math.max(1024, Math.ceil(this.count * 1.5)) * ID_LENGTH);
      this.records.copy(grown, 0, 0, this.count * ID_LENGTH);
      this.records = grown;
    }
    if (this.sorted && this.count > 0 && this.compareAt(this.count - 1, id) >= 0) this.sorted = false;
    id.copy(this.records, this.count * ID_LENGTH);
    this.count++;
  }

  has(id: Buffer): boolean {
    if (id.length !== ID_LENGTH) return false;
    if (!this.sorted) this.sort();
    let low = 0;
    let high = this.count - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const order = this.compareAt(middle, id);
      if (order === 0) return true;
      if (order < 0) low = middle + 1;
      else high = middle - 1;
    }
    return false;
  }

  /** The record at `position` compared with `id` (Buffer#compare order). */
  private compareAt(position: number, id: Buffer): number {
    const start = position * ID_LENGTH;
    return this.records.compare(id, 0, ID_LENGTH, start, start + ID_LENGTH);
  }

  private sort(): void {
    const order = Array.from({ length: this.count }, (_, position) => position);
    const record = (position: number): Buffer =>
      this.records.subarray(position * ID_LENGTH, (position + 1) * ID_LENGTH);
    order.sort((a, b) => Buffer.compare(record(a), record(b)));
    const sorted = Buffer.allocUnsafe(this.count * ID_LENGTH);
    order.forEach((position, rank) =>
      this.records.copy(sorted, rank * ID_LENGTH, position * ID_LENGTH, (position + 1) * ID_LENGTH),
    );
    this.records = sorted;
    this.sorted = true;
  }
}
