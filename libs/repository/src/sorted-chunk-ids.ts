import { CHUNK_ID_LENGTH as ID } from './format/disk-index.codec';

/** Buckets by the first two bytes of an id: ids are hashes, spread evenly over them. */
const BUCKETS = 65_536;
/** Ids waiting to be merged, at least (a merge moves the records after each insertion point). */
const MIN_PENDING = 65_536;

/**
 * A set of chunk ids, mostly held as one sorted run of unique 32-byte records: about 32 bytes per
 * id. A repository's million chunks take 32 MiB here, where a `Set` of id strings took 66 MiB and
 * the listing's `Map` of keys, sizes and dates 250 MiB more (docs/benchmarks/repository.md).
 *
 * Ids may be added in any order and more than once (the indexes of all of a repository's restore
 * points, a writer's chunks as they come). An id the records hold is skipped; a new one waits in
 * a small `Set` of strings (a lookup there is a hash lookup), which is sorted and merged into the
 * records, in place, once it holds an eighth of the set: merges are few, and a set built from a
 * listing of chunks/ (ascending ids) only ever appends. A table of where each first-two-bytes
 * bucket starts makes a lookup among the records a search of a few records.
 */
export class SortedChunkIds {
  /** `count` sorted records, then spare room. */
  private records: Buffer = Buffer.alloc(0);
  private count = 0;
  /** Where each bucket's records start (bucket b: starts[b] to starts[b + 1]). */
  private readonly starts = new Uint32Array(BUCKETS + 1);
  /** Ids added since the last merge, as latin1 strings: none of them is in `records`. */
  private pending = new Set<string>();
  private pendingAscending = true;
  private lastPending = '';
  /** False after appends (appendAscending) until `starts` is rebuilt, at the next lookup or merge. */
  private indexed = true;

  /** How many distinct ids the set holds. */
  get size(): number {
    return this.count + this.pending.size;
  }

  /** Adds `id`; false when the set already held it (one lookup for "has, else add"). */
  add(id: Buffer): boolean {
    if (id.length !== ID) throw new RangeError(`a chunk id is ${ID} bytes, got ${id.length}`);
    return this.addFrom(id, 0);
  }

  /**
   * Adds the id at `source[offset, offset + 32)` (a record of a larger buffer: no copy first);
   * false when the set already held it.
   */
  addFrom(source: Buffer, offset: number): boolean {
    if (offset < 0 || offset + ID > source.length)
      throw new RangeError(`no 32-byte chunk id at offset ${offset} of ${source.length} bytes`);
    if (this.findAt(source, offset) >= 0) return false;
    const key = source.toString('latin1', offset, offset + ID);
    if (this.pending.has(key)) return false;
    // latin1 strings compare by their bytes' values: the ids' order.
    if (this.pending.size > 0 && key < this.lastPending) this.pendingAscending = false;
    this.pending.add(key);
    this.lastPending = key;
    if (this.pending.size >= Math.max(MIN_PENDING, this.count >>> 3)) this.merge();
    return true;
  }

  /**
   * Appends `id` when it sorts after every id held (a listing of chunks/, in key order): no string,
   * no merge, the bucket table rebuilt once at the next lookup. False, and nothing added, when it
   * does not: add() it instead.
   */
  appendAscending(id: Buffer): boolean {
    if (id.length !== ID) throw new RangeError(`a chunk id is ${ID} bytes, got ${id.length}`);
    this.merge();
    if (this.count > 0 && compareIds(this.records, (this.count - 1) * ID, id, 0) >= 0) return false;
    if (this.records.length < (this.count + 1) * ID) {
      const grown = Buffer.allocUnsafe(Math.max(1024, Math.ceil(this.count * 1.5)) * ID);
      this.records.copy(grown, 0, 0, this.count * ID);
      this.records = grown;
    }
    id.copy(this.records, this.count * ID);
    this.count++;
    this.indexed = false;
    return true;
  }

  has(id: Buffer): boolean {
    if (id.length !== ID) return false;
    return this.hasAt(id, 0);
  }

  /** Whether the id at `source[offset, offset + 32)` is in the set. */
  hasAt(source: Buffer, offset: number): boolean {
    if (this.findAt(source, offset) >= 0) return true;
    return this.pending.size > 0 && this.pending.has(source.toString('latin1', offset, offset + ID));
  }

  /** Where `id` is in ascending order (0 to size - 1), or -1 when the set does not hold it. */
  positionOf(id: Buffer): number {
    if (id.length !== ID) return -1;
    this.merge();
    return this.findAt(id, 0);
  }

  /** The id at `position` (0 to size - 1) in ascending order: a view, valid until the next add. */
  idAt(position: number): Buffer {
    this.merge();
    if (!Number.isInteger(position) || position < 0 || position >= this.count)
      throw new RangeError(`no id at position ${position} of ${this.count}`);
    return this.records.subarray(position * ID, (position + 1) * ID);
  }

  /**
   * The positions of the ids whose first byte is `byte` (the ids of folder chunks/ab/): one run,
   * `start` to `end` (exclusive), empty when none is held. Read from the bucket table: no search.
   */
  positionsWithFirstByte(byte: number): { start: number; end: number } {
    if (!Number.isInteger(byte) || byte < 0 || byte > 255) throw new RangeError(`no first byte ${byte}`);
    this.merge();
    this.index();
    return { start: this.starts[byte << 8] ?? 0, end: this.starts[(byte + 1) << 8] ?? 0 };
  }

  /**
   * A set of the ids `visit` hands to `take` (records of a larger buffer, in any order, repeats
   * allowed: a disk index's chunk ids), built without a string per id, which adding them one by
   * one makes. `visit` runs twice and must hand the same ids both times: once to count each
   * bucket's ids, once to place them in one buffer of 32 bytes an id; each bucket is then ordered
   * and repeats dropped. With `into`, the records go there when they fit (no allocation; the set
   * then holds a view of it: do not reuse `into` while the set is in use).
   */
  static fromRecords(
    visit: (take: (source: Buffer, offset: number) => void) => void,
    into?: Buffer,
  ): SortedChunkIds {
    const { records, count } = bucketSorted(visit, into);
    let unique = 0;
    for (let position = 0; position < count; position++) {
      if (unique > 0 && compareIds(records, (unique - 1) * ID, records, position * ID) === 0) continue;
      if (unique !== position) records.copyWithin(unique * ID, position * ID, (position + 1) * ID);
      unique++;
    }
    const set = new SortedChunkIds();
    set.records = records;
    set.count = unique;
    set.indexed = false;
    return set;
  }

  /** A set of the ids of `hexes` (hex strings, 64 digits each). */
  static fromHex(hexes: Iterable<string>): SortedChunkIds {
    const set = new SortedChunkIds();
    for (const hex of hexes) {
      const id = Buffer.from(hex, 'hex');
      if (id.length !== ID || id.toString('hex') !== hex.toLowerCase())
        throw new RangeError(`not a chunk id: ${JSON.stringify(hex)}`);
      set.add(id);
    }
    return set;
  }

  /**
   * A new set of every id of `sets`, merged record by record (they are sorted runs already): 32
   * bytes an id, no string per id, none of the sets changed.
   */
  static union(sets: Iterable<SortedChunkIds>): SortedChunkIds {
    // A cursor into each set's records (a few sets: a disk's ids each).
    const runs = [...sets].filter((set) => set.size > 0).map((set) => ({ set, at: 0 }));
    for (const run of runs) run.set.merge();
    const union = new SortedChunkIds();
    union.records = Buffer.allocUnsafe(runs.reduce((total, run) => total + run.set.count, 0) * ID);
    for (;;) {
      let next: { set: SortedChunkIds; at: number } | undefined;
      for (const run of runs) {
        if (run.at >= run.set.count) continue;
        if (
          next === undefined ||
          compareIds(run.set.records, run.at * ID, next.set.records, next.at * ID) < 0
        )
          next = run;
      }
      if (next === undefined) break;
      const offset = next.at++ * ID;
      // Held by an earlier set too: the last id taken.
      if (
        union.count > 0 &&
        compareIds(union.records, (union.count - 1) * ID, next.set.records, offset) === 0
      )
        continue;
      next.set.records.copy(union.records, union.count * ID, offset, offset + ID);
      union.count++;
    }
    union.indexed = false;
    return union;
  }

  /** The ids in ascending order, each a view valid until the next add. */
  *[Symbol.iterator](): Generator<Buffer> {
    this.merge();
    for (let position = 0; position < this.count; position++)
      yield this.records.subarray(position * ID, (position + 1) * ID);
  }

  /** Position of the id at `source[offset…]` among the records, or -1 (pending ids not searched). */
  private findAt(source: Buffer, offset: number): number {
    if (this.count === 0) return -1;
    this.index();
    const bucket = source.readUInt16BE(offset);
    let low = this.starts[bucket] ?? 0;
    let end = this.starts[bucket + 1] ?? 0;
    // Halve a big bucket (ten million ids: ~150 a bucket), then scan the few records left side by
    // side: a scan reads them as they stream in from memory, where each probe of a binary search
    // waits for its own cache line.
    while (end - low > 16) {
      const middle = (low + end) >>> 1;
      if (compareIds(this.records, middle * ID, source, offset) <= 0) low = middle;
      else end = middle;
    }
    for (let position = low; position < end; position++) {
      const order = compareIds(this.records, position * ID, source, offset);
      if (order === 0) return position;
      if (order > 0) return -1;
    }
    return -1;
  }

  /**
   * Sorts the pending ids and inserts them among the records in place, from the last one back:
   * each run of records after an insertion point moves once, as one copy.
   */
  private merge(): void {
    const added = this.pending.size;
    if (added === 0) return;
    this.index();
    let incoming: Buffer = Buffer.allocUnsafe(added * ID);
    let at = 0;
    for (const key of this.pending) incoming.write(key, at++ * ID, ID, 'latin1');
    if (!this.pendingAscending) incoming = sortedRecords(incoming, added);
    const total = this.count + added;
    if (this.records.length < total * ID) {
      const grown = Buffer.allocUnsafe(Math.max(total, Math.ceil(this.count * 1.25)) * ID);
      this.records.copy(grown, 0, 0, this.count * ID);
      this.records = grown;
    }
    // end: where the records not yet moved end; each incoming id goes after those smaller than it.
    let end = this.count;
    for (let index = added - 1; index >= 0; index--) {
      const position = this.insertionPoint(incoming, index * ID, end);
      if (position < end) this.records.copyWithin((position + index + 1) * ID, position * ID, end * ID);
      incoming.copy(this.records, (position + index) * ID, index * ID, (index + 1) * ID);
      end = position;
    }
    // A bucket now starts after the ids added in the buckets before it.
    const addedPerBucket = new Uint32Array(BUCKETS + 1);
    for (let index = 0; index < added; index++) addedPerBucket[incoming.readUInt16BE(index * ID) + 1]++;
    let before = 0;
    for (let bucket = 1; bucket <= BUCKETS; bucket++) {
      before += addedPerBucket[bucket] ?? 0;
      this.starts[bucket] = (this.starts[bucket] ?? 0) + before;
    }
    this.count = total;
    this.pending = new Set();
    this.pendingAscending = true;
    this.lastPending = '';
  }

  /** Rebuilds the bucket table after appends. */
  private index(): void {
    if (this.indexed) return;
    this.starts.fill(0);
    for (let position = 0; position < this.count; position++)
      this.starts[this.records.readUInt16BE(position * ID) + 1]++;
    for (let bucket = 1; bucket <= BUCKETS; bucket++)
      this.starts[bucket] = (this.starts[bucket] ?? 0) + (this.starts[bucket - 1] ?? 0);
    this.indexed = true;
  }

  /** How many of the first `end` records sort before the id at `source[offset…]` (none equal it). */
  private insertionPoint(source: Buffer, offset: number, end: number): number {
    const bucket = source.readUInt16BE(offset);
    let low = Math.min(this.starts[bucket] ?? 0, end);
    let high = Math.min(this.starts[bucket + 1] ?? 0, end);
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (compareIds(this.records, middle * ID, source, offset) < 0) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}

/** `count` records in any order, sorted (bucketSorted). */
function sortedRecords(records: Buffer, count: number): Buffer {
  return bucketSorted((take) => {
    for (let position = 0; position < count; position++) take(records, position * ID);
  }).records;
}

/**
 * The records `visit` hands to `take`, sorted into one new buffer (or `into`), repeats kept: a counting sort on
 * their first two bytes puts each in one of 65,536 buckets of a few ids, each then ordered by
 * insertion (no allocation per comparison). `visit` runs twice (to count, then to place) and must
 * hand the same records both times.
 */
function bucketSorted(
  visit: (take: (source: Buffer, offset: number) => void) => void,
  into?: Buffer,
): {
  records: Buffer;
  count: number;
} {
  const starts = new Uint32Array(BUCKETS + 1);
  let count = 0;
  visit((source, offset) => {
    starts[source.readUInt16BE(offset) + 1]++;
    count++;
  });
  for (let bucket = 1; bucket <= BUCKETS; bucket++) starts[bucket] += starts[bucket - 1] ?? 0;
  const sorted =
    into !== undefined && into.length >= count * ID
      ? into.subarray(0, count * ID)
      : Buffer.allocUnsafe(Math.max(count, 1) * ID);
  const next = starts.slice(0, BUCKETS);
  let placed = 0;
  visit((source, offset) => {
    const bucket = source.readUInt16BE(offset);
    const rank = next[bucket] ?? 0;
    if (rank >= (starts[bucket + 1] ?? 0) || placed >= count)
      throw new RangeError('the visitor handed other ids the second time');
    next[bucket] = rank + 1;
    source.copy(sorted, rank * ID, offset, offset + ID);
    placed++;
  });
  if (placed !== count) throw new RangeError('the visitor handed other ids the second time');
  const scratch = Buffer.allocUnsafe(ID);
  for (let bucket = 0; bucket < BUCKETS; bucket++)
    insertionSort(sorted, starts[bucket] ?? 0, starts[bucket + 1] ?? 0, scratch);
  return { records: sorted, count };
}

/** Orders the records `first` to `end` (exclusive) of `records` in place; `scratch` holds one. */
function insertionSort(records: Buffer, first: number, end: number, scratch: Buffer): void {
  for (let at = first + 1; at < end; at++) {
    records.copy(scratch, 0, at * ID, (at + 1) * ID);
    let hole = at;
    while (hole > first && compareIds(records, (hole - 1) * ID, scratch, 0) > 0) {
      records.copy(records, hole * ID, (hole - 1) * ID, hole * ID);
      hole--;
    }
    scratch.copy(records, hole * ID);
  }
}

/**
 * The order of the ids at `a[aOffset…]` and `b[bOffset…]` (negative: a's first), byte by byte in
 * line: ids are hashes, so the first bytes nearly always decide, and a native `Buffer#compare`
 * call costs more than such a comparison.
 */
function compareIds(a: Uint8Array, aOffset: number, b: Uint8Array, bOffset: number): number {
  for (let at = 0; at < ID; at++) {
    const difference = (a[aOffset + at] ?? 0) - (b[bOffset + at] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}
