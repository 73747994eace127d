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

export class DiskIndex {
  /**
   * One 32-byte record per block and a bit saying whether it holds an id: 32 bytes per block of
   * the disk (32 MiB for 2 TiB), not an object per allocated block.
   */
  private readonly records: Buffer;
  private readonly present: Uint8Array;
  private allocated = 0;
  readonly blockCount: number;

  constructor(
    readonly virtualSize: number,
    readonly blockSize: number,
  ) {
    this.blockCount = blockCountOf(virtualSize, blockSize);
    this.records = Buffer.alloc(this.blockCount * CHUNK_ID_LENGTH);
    this.present = new Uint8Array(Math.ceil(this.blockCount / 8));
  }

  get allocatedCount(): number {
    return this.allocated;
  }

  /** Bytes of block `index` (the last block may be shorter than the block size). */
  blockLength(index: number): number {
    return Math.min(this.blockSize, this.virtualSize - index * this.blockSize);
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
    chunkId.copy(this.records, index * CHUNK_ID_LENGTH);
    if (!had) this.allocated++;
    this.present[index >> 3] = (this.present[index >> 3] ?? 0) | bit;
  }

  /** Block `index` as `source` has it (its id, or absent): no copy of the id on the way. */
  setFrom(source: DiskIndex, index: number): void {
    if (!source.has(index)) return this.set(index, undefined);
    this.set(index, source.records.subarray(index * CHUNK_ID_LENGTH, (index + 1) * CHUNK_ID_LENGTH));
  }

  /** Whether block `index` holds a chunk id (false: it reads as zeros). No copy, unlike get. */
  has(index: number): boolean {
    return ((this.present[index >> 3] ?? 0) & (0x80 >> (index & 7))) !== 0;
  }

  /** The chunk id of block `index` (a copy), or undefined for a block that reads as zeros. */
  get(index: number): Buffer | undefined {
    if (!this.has(index)) return undefined;
    return Buffer.from(this.records.subarray(index * CHUNK_ID_LENGTH, (index + 1) * CHUNK_ID_LENGTH));
  }

  /** Allocated block numbers, ascending. */
  *allocatedBlocks(): Generator<number> {
    for (let index = 0; index < this.blockCount; index++) if (this.has(index)) yield index;
  }

  /** The chunk id of each allocated block, in block order (copies). */
  *chunkIds(): Generator<Buffer> {
    for (const index of this.allocatedBlocks()) yield this.get(index) as Buffer;
  }

  /**
   * Visits the chunk id of each allocated block in place, `records[offset, offset + 32)`, valid
   * during the call only: no copy per block, unlike chunkIds (a GC's mark reads every index).
   */
  forEachChunkId(visit: (records: Buffer, offset: number) => void): void {
    for (let index = 0; index < this.blockCount; index++)
      if (this.has(index)) visit(this.records, index * CHUNK_ID_LENGTH);
  }

  encode(): Buffer {
    const bitmapLength = Math.ceil(this.blockCount / 8);
    const allocated = this.allocatedCount;
    const out = Buffer.alloc(HEADER_LENGTH + bitmapLength + allocated * CHUNK_ID_LENGTH);
    out.write(MAGIC, 0, 'latin1');
    out[4] = VERSION;
    out.writeUInt32BE(this.blockSize, 8);
    out.writeBigUInt64BE(BigInt(this.virtualSize), 12);
    out.writeUInt32BE(this.blockCount, 20);
    out.writeUInt32BE(allocated, 24);
    let idOffset = HEADER_LENGTH + bitmapLength;
    for (const index of this.allocatedBlocks()) {
      out[HEADER_LENGTH + (index >> 3)] |= 0x80 >> (index & 7);
      this.records.copy(out, idOffset, index * CHUNK_ID_LENGTH, (index + 1) * CHUNK_ID_LENGTH);
      idOffset += CHUNK_ID_LENGTH;
    }
    return out;
  }

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
    const index = new DiskIndex(virtualSize, blockSize);
    let idOffset = HEADER_LENGTH + bitmapLength;
    for (let block = 0; block < blockCount; block++) {
      if (((bytes[HEADER_LENGTH + (block >> 3)] ?? 0) & (0x80 >> (block & 7))) === 0) continue;
      if (idOffset + CHUNK_ID_LENGTH > bytes.length)
        throw new EnvelopeError('disk index bitmap has more bits than ids');
      index.set(block, bytes.subarray(idOffset, idOffset + CHUNK_ID_LENGTH));
      idOffset += CHUNK_ID_LENGTH;
    }
    if (idOffset !== bytes.length) throw new EnvelopeError('disk index has fewer bits set than ids stored');
    return index;
  }
}

export function blockCountOf(virtualSize: number, blockSize: number): number {
  return Math.ceil(virtualSize / blockSize);
}
