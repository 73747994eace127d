import { EnvelopeError } from './object.envelope';

/**
 * A restore point's map of one disk: block number -> chunk id. Compact binary, then sealed in an
 * index envelope (compressed, encrypted like chunks):
 *
 *   0 magic "HVDI"  4 version u8 (1)  5..7 reserved  8 block size u32  12 virtual size u64
 *   20 block count u32  24 allocated count u32  28 bitmap (1 bit per block, MSB first)
 *   then one 32-byte chunk id per set bit, in block order.
 *
 * An absent block reads as zeros: all-zero blocks and never-written blocks cost one bit.
 */
const MAGIC = 'HVDI';
const VERSION = 1;
const HEADER_LENGTH = 28;
export const CHUNK_ID_LENGTH = 32;
/** Blocks per page of records an index writes into: 8 KiB of ids, allocated on the first write. */
const PAGE_BLOCKS = 256;
const PAGE_BYTES = PAGE_BLOCKS * CHUNK_ID_LENGTH;

/** Set bits of each byte value. */
const BITS_SET = Uint8Array.from({ length: 256 }, (_, value) => {
  let count = 0;
  for (let rest = value; rest !== 0; rest &= rest - 1) count++;
  return count;
});

/**
 * Ids as an encoded index stores them: only the allocated blocks', in block order, read in place
 * from the decoded bytes (no copy). Immutable, so indexes derived from one share it.
 */
class PackedIds {
  /** Set bits of the bitmap before each run of 64 blocks: the position of a block's id. */
  private readonly rank: Uint32Array;
  readonly count: number;

  constructor(
    private readonly bitmap: Uint8Array,
    readonly ids: Buffer,
  ) {
    this.rank = new Uint32Array(Math.ceil(bitmap.length / 8));
    let count = 0;
    for (let byte = 0; byte < bitmap.length; byte++) {
      if ((byte & 7) === 0) this.rank[byte >> 3] = count;
      count += BITS_SET[bitmap[byte] ?? 0] ?? 0;
    }
    this.count = count;
  }

  /** Offset in `ids` of the id of `block`, a block whose bit is set in this bitmap. */
  offsetOf(block: number): number {
    const byte = block >> 3;
    let position = this.rank[byte >> 3] ?? 0;
    for (let before = byte & ~7; before < byte; before++) position += BITS_SET[this.bitmap[before] ?? 0] ?? 0;
    position += BITS_SET[(this.bitmap[byte] ?? 0) & (0xff00 >> (block & 7))] ?? 0;
    return position * CHUNK_ID_LENGTH;
  }
}

export class DiskIndex {
  /** Bit per block: it holds a chunk id (MSB first, as encoded). */
  private readonly present: Uint8Array;
  /**
   * Ids written since the index was created, decoded or derived, a page of 256 blocks at a time:
   * a page holds 32 bytes per block of its range and, once it exists, every id of that range. A
   * sparse disk costs only the pages it touches, and an incremental over a decoded base only the
   * pages of the blocks it changes.
   */
  private readonly pages: (Buffer | undefined)[];
  /** The ids of the index this one was decoded from (or derived from), for ranges without a page. */
  private packed: PackedIds | undefined;
  private allocated = 0;
  /** Where `locate` found the last id asked for: no object per lookup in loops over every block. */
  private foundRecords: Buffer = Buffer.alloc(0);
  private foundOffset = 0;
  readonly blockCount: number;

  constructor(
    readonly virtualSize: number,
    readonly blockSize: number,
  ) {
    this.blockCount = blockCountOf(virtualSize, blockSize);
    this.present = new Uint8Array(Math.ceil(this.blockCount / 8));
    this.pages = new Array<Buffer | undefined>(Math.ceil(this.blockCount / PAGE_BLOCKS));
  }

  /** An index holding `bitmap`'s blocks (copied), their ids in `packed` (shared). */
  private static over(
    virtualSize: number,
    blockSize: number,
    packed: PackedIds | undefined,
    bitmap: Uint8Array,
  ): DiskIndex {
    const index = new DiskIndex(virtualSize, blockSize);
    index.packed = packed;
    index.present.set(bitmap.subarray(0, index.present.length));
    const lastBits = index.blockCount & 7;
    if (lastBits !== 0 && index.present.length > 0)
      index.present[index.present.length - 1] &= 0xff00 >> lastBits;
    for (const byte of index.present) index.allocated += BITS_SET[byte] ?? 0;
    return index;
  }

  /**
   * A new index of a disk of `virtualSize` holding what `base` holds, for an incremental: the
   * base's decoded ids are shared, not copied, until a block is written. A block whose length
   * differs between the two sizes (the last block of either) is left out, as one past the new size.
   */
  static inheriting(base: DiskIndex, virtualSize: number): DiskIndex {
    const index = DiskIndex.over(virtualSize, base.blockSize, base.packed, base.present);
    const blockCount = index.blockCount;
    for (let page = 0; page < index.pages.length; page++) {
      const own = base.pages[page];
      if (own === undefined) continue;
      const copy = Buffer.alloc(PAGE_BYTES);
      own.copy(copy);
      index.pages[page] = copy;
    }
    for (const block of [base.blockCount - 1, blockCount - 1]) {
      if (block >= 0 && block < blockCount && base.blockLength(block) !== index.blockLength(block))
        index.set(block, undefined);
    }
    return index;
  }

  get allocatedCount(): number {
    return this.allocated;
  }

  /** Bytes of block `index` (the last block may be shorter than the block size). */
  blockLength(index: number): number {
    if (index < 0 || index >= this.blockCount) return 0;
    return Math.min(this.blockSize, this.virtualSize - index * this.blockSize);
  }

  /** Bytes of disk the allocated blocks cover (the last block counted at its length). */
  allocatedBytes(): number {
    const last = this.blockCount - 1;
    if (!this.has(last)) return this.allocated * this.blockSize;
    return (this.allocated - 1) * this.blockSize + this.blockLength(last);
  }

  /** Records `chunkId` (copied) for block `index`, or marks it absent (reads as zeros). */
  set(index: number, chunkId: Buffer | undefined): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.blockCount)
      throw new RangeError(`block ${index} is outside a disk index of ${this.blockCount} blocks`);
    const bit = 0x80 >> (index & 7);
    const had = ((this.present[index >> 3] ?? 0) & bit) !== 0;
    if (chunkId === undefined) {
      if (had) this.allocated--;
      this.present[index >> 3] = (this.present[index >> 3] ?? 0) & ~bit;
      return;
    }
    if (chunkId.length !== CHUNK_ID_LENGTH)
      throw new RangeError(`a chunk id is ${CHUNK_ID_LENGTH} bytes, got ${chunkId.length}`);
    chunkId.copy(this.writablePage(index), (index % PAGE_BLOCKS) * CHUNK_ID_LENGTH);
    if (!had) this.allocated++;
    this.present[index >> 3] = (this.present[index >> 3] ?? 0) | bit;
  }

  /** Whether block `index` holds a chunk id (false: it reads as zeros). No copy, unlike get. */
  has(index: number): boolean {
    return ((this.present[index >> 3] ?? 0) & (0x80 >> (index & 7))) !== 0;
  }

  /** The chunk id of block `index` (a copy), or undefined for a block that reads as zeros. */
  get(index: number): Buffer | undefined {
    if (!this.has(index)) return undefined;
    this.locate(index);
    return Buffer.from(this.foundRecords.subarray(this.foundOffset, this.foundOffset + CHUNK_ID_LENGTH));
  }

  /**
   * Allocated block numbers, ascending, read from the bitmap (no array of them); only those from
   * `first` up to `end` (exclusive) when given.
   */
  *allocatedBlocks(first = 0, end = this.blockCount): Generator<number> {
    const present = this.present;
    const from = Math.max(0, first);
    const to = Math.min(end, this.blockCount);
    for (let byte = from >> 3; byte < present.length && byte * 8 < to; byte++) {
      const bits = present[byte] ?? 0;
      if (bits === 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        const block = byte * 8 + bit;
        if ((bits & (0x80 >> bit)) !== 0 && block >= from && block < to) yield block;
      }
    }
  }

  /** The chunk id of each allocated block, in block order (copies). */
  *chunkIds(): Generator<Buffer> {
    for (const index of this.allocatedBlocks()) yield this.get(index) as Buffer;
  }

  /**
   * Visits the chunk id of each allocated block in place, `records[offset, offset + 32)`, valid
   * during the call only: no copy per block, unlike chunkIds (a GC's mark reads every index).
   * Only the blocks from `first` up to `end` (exclusive) when given.
   */
  forEachChunkId(visit: (records: Buffer, offset: number) => void, first = 0, end = this.blockCount): void {
    for (const index of this.allocatedBlocks(first, end)) {
      this.locate(index);
      visit(this.foundRecords, this.foundOffset);
    }
  }

  /** Bytes of the encoding. */
  get encodedLength(): number {
    return HEADER_LENGTH + this.present.length + this.allocated * CHUNK_ID_LENGTH;
  }

  /** The whole encoding in one buffer (small indexes; large ones are sent as `encodedPieces`). */
  encode(): Buffer {
    return Buffer.concat([...this.encodedPieces()], this.encodedLength);
  }

  /**
   * The encoding in new buffers, header and bitmap first, then the ids `idsPerPiece` at a time
   * (64 KiB by default): a 32 MiB index is never one buffer. Each piece reads the index as it is
   * then: do not change it while the pieces are taken.
   */
  *encodedPieces(idsPerPiece = 2048): Generator<Buffer> {
    const head = Buffer.alloc(HEADER_LENGTH + this.present.length);
    head.write(MAGIC, 0, 'latin1');
    head[4] = VERSION;
    head.writeUInt32BE(this.blockSize, 8);
    head.writeBigUInt64BE(BigInt(this.virtualSize), 12);
    head.writeUInt32BE(this.blockCount, 20);
    head.writeUInt32BE(this.allocated, 24);
    head.set(this.present, HEADER_LENGTH);
    yield head;
    const perPiece = Math.max(1, Math.floor(idsPerPiece));
    let left = this.allocated;
    let piece = Buffer.allocUnsafe(0);
    let at = 0;
    for (const index of this.allocatedBlocks()) {
      if (at === piece.length) {
        if (at > 0) yield piece;
        piece = Buffer.allocUnsafe(Math.min(perPiece, left) * CHUNK_ID_LENGTH);
        at = 0;
      }
      this.locate(index);
      this.foundRecords.copy(piece, at, this.foundOffset, this.foundOffset + CHUNK_ID_LENGTH);
      at += CHUNK_ID_LENGTH;
      left--;
    }
    if (at > 0) yield piece.subarray(0, at);
  }

  /**
   * Reads an encoded index in place: the index keeps `bytes` (its ids are not copied), so the
   * caller must not reuse them.
   */
  static decode(bytes: Buffer): DiskIndex {
    if (bytes.length < HEADER_LENGTH || bytes.toString('latin1', 0, 4) !== MAGIC) {
      throw new EnvelopeError('not a disk index (bad magic or too short)');
    }
    if (bytes[4] !== VERSION) throw new EnvelopeError(`disk index version ${bytes[4]} is not supported`);
    const blockSize = bytes.readUInt32BE(8);
    const virtualSize = Number(bytes.readBigUInt64BE(12));
    const blockCount = bytes.readUInt32BE(20);
    const allocated = bytes.readUInt32BE(24);
    if (blockSize === 0 || blockCount !== blockCountOf(virtualSize, blockSize)) {
      throw new EnvelopeError(`disk index block count ${blockCount} does not match size ${virtualSize}`);
    }
    const bitmapLength = Math.ceil(blockCount / 8);
    if (bytes.length !== HEADER_LENGTH + bitmapLength + allocated * CHUNK_ID_LENGTH) {
      throw new EnvelopeError(`disk index is ${bytes.length} bytes, its header announces another length`);
    }
    const bitmap = bytes.subarray(HEADER_LENGTH, HEADER_LENGTH + bitmapLength);
    const lastBits = blockCount & 7;
    if (lastBits !== 0 && ((bitmap[bitmapLength - 1] ?? 0) & (0xff >> lastBits)) !== 0)
      throw new EnvelopeError('disk index bitmap has bits set past its last block');
    const packed = new PackedIds(bitmap, bytes.subarray(HEADER_LENGTH + bitmapLength));
    if (packed.count > allocated) throw new EnvelopeError('disk index bitmap has more bits than ids');
    if (packed.count < allocated) throw new EnvelopeError('disk index has fewer bits set than ids stored');
    return DiskIndex.over(virtualSize, blockSize, packed, bitmap);
  }

  /**
   * Finds the id of allocated block `index`, in its page or in the decoded ids, and leaves it at
   * `foundRecords[foundOffset, + 32)` until the next call.
   */
  private locate(index: number): void {
    const page = this.pages[Math.floor(index / PAGE_BLOCKS)];
    if (page !== undefined) {
      this.foundRecords = page;
      this.foundOffset = (index % PAGE_BLOCKS) * CHUNK_ID_LENGTH;
      return;
    }
    if (this.packed === undefined) throw new Error(`block ${index} is marked allocated but holds no id`);
    this.foundRecords = this.packed.ids;
    this.foundOffset = this.packed.offsetOf(index);
  }

  /** The page of block `index`, made on first write with the ids its range already holds. */
  private writablePage(index: number): Buffer {
    const number = Math.floor(index / PAGE_BLOCKS);
    const existing = this.pages[number];
    if (existing !== undefined) return existing;
    const page = Buffer.alloc(PAGE_BYTES);
    const first = number * PAGE_BLOCKS;
    const end = Math.min(first + PAGE_BLOCKS, this.blockCount);
    for (let block = first; block < end; block++) {
      if (!this.has(block)) continue;
      this.locate(block);
      this.foundRecords.copy(
        page,
        (block - first) * CHUNK_ID_LENGTH,
        this.foundOffset,
        this.foundOffset + CHUNK_ID_LENGTH,
      );
    }
    this.pages[number] = page;
    return page;
  }
}

export function blockCountOf(virtualSize: number, blockSize: number): number {
  return Math.ceil(virtualSize / blockSize);
}
