/** Bytes of a chunk id (SHA-256 or HMAC-SHA256). */
const ID_LENGTH = 32;

/**
 * A set of chunk ids held as one sorted run of 32-byte records: 32 bytes per id. A repository's
 * million chunks take 32 MiB here, where a `Set` of id strings took 66 MiB and the listing's `Map`
 * of keys, sizes and dates 250 MiB more (docs/benchmarks/repository.md, "Known chunks"). Ids added
 * in ascending order (a listing of chunks/ is in key order) are taken as they come; ids added out
 * of order (a restore point's index) are sorted at the next lookup. Lookups are a binary search.
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

  /**
   * Ids are hashes, spread evenly: a counting sort on their first two bytes puts each in one of
   * 65,536 buckets of a few ids, each then ordered by insertion (no allocation per comparison).
   */
  private sort(): void {
    const starts = new Uint32Array(65_537);
    for (let position = 0; position < this.count; position++)
      starts[this.records.readUInt16BE(position * ID_LENGTH) + 1]++;
    for (let bucket = 1; bucket < starts.length; bucket++) starts[bucket] += starts[bucket - 1] ?? 0;
    const sorted = Buffer.allocUnsafe(Math.max(this.count, 1) * ID_LENGTH);
    const next = starts.slice(0, 65_536);
    for (let position = 0; position < this.count; position++) {
      const bucket = this.records.readUInt16BE(position * ID_LENGTH);
      const rank = next[bucket] ?? 0;
      next[bucket] = rank + 1;
      this.records.copy(sorted, rank * ID_LENGTH, position * ID_LENGTH, (position + 1) * ID_LENGTH);
    }
    const scratch = Buffer.allocUnsafe(ID_LENGTH);
    for (let bucket = 0; bucket < 65_536; bucket++)
      insertionSort(sorted, starts[bucket] ?? 0, starts[bucket + 1] ?? 0, scratch);
    this.records = sorted;
    this.sorted = true;
  }
}

/** Orders the records `first` to `end` (exclusive) of `records` in place; `scratch` holds one. */
function insertionSort(records: Buffer, first: number, end: number, scratch: Buffer): void {
  for (let at = first + 1; at < end; at++) {
    records.copy(scratch, 0, at * ID_LENGTH, (at + 1) * ID_LENGTH);
    let hole = at;
    while (
      hole > first &&
      records.compare(scratch, 0, ID_LENGTH, (hole - 1) * ID_LENGTH, hole * ID_LENGTH) > 0
    ) {
      records.copy(records, hole * ID_LENGTH, (hole - 1) * ID_LENGTH, hole * ID_LENGTH);
      hole--;
    }
    scratch.copy(records, hole * ID_LENGTH);
  }
}
