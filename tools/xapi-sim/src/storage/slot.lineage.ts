import { BLOCK_SIZE } from './block.constants';

/** A VHD sector: the unit of a block's sector bitmap. */
export const SECTOR_SIZE = 512;
export const SECTORS_PER_BLOCK = BLOCK_SIZE / SECTOR_SIZE;
/** Bytes of a VHD sector bitmap: one bit per sector, most significant bit first. */
export const SECTOR_BITMAP_SIZE = SECTORS_PER_BLOCK / 8;
/** Copies of copies kept track of; past this a slot's history starts again (ofUnknownHistory). */
const MAX_LINEAGE_DEPTH = 64;

/**
 * How a slot's content came to be: copied from another slot's content (copy-on-write) or from
 * zeros (a fresh block), then the sectors written since. A differencing export compares a block's
 * lineage with the base's to tell which sectors changed since the base, as a VHD chain would.
 *
 * `written` null means every sector was written. A lineage that another one was copied from is
 * frozen: a later in-place write to its slot starts a new lineage instead of changing it.
 * Memory: 512 bytes per partly written block and copy, with at most MAX_LINEAGE_DEPTH copies.
 */
export class SlotLineage {
  frozen = false;

  private constructor(
    /** The content this slot started from; null: zeros. */
    readonly copiedFrom: SlotLineage | null,
    private written: Uint8Array | null,
  ) {
    this.depth = copiedFrom === null ? 0 : copiedFrom.depth + 1;
  }

  /** Number of copies between this lineage and its first content. */
  readonly depth: number;

  /** A block allocated afresh (zeros) and written at `inBlock`. */
  static fresh(inBlock: number, length: number): SlotLineage {
    return new SlotLineage(null, SlotLineage.bitsFor(inBlock, length));
  }

  /**
   * The content a slot holds when its history is unknown (lost across a restart, or too long):
   * a copy made from it can still be told apart from it, not from anything older.
   */
  static ofUnknownHistory(): SlotLineage {
    return new SlotLineage(null, null);
  }

  /** Whether copies of this lineage may still be tracked (MAX_LINEAGE_DEPTH). */
  get copyable(): boolean {
    return this.depth < MAX_LINEAGE_DEPTH;
  }

  /** A copy of `source`'s content (copy-on-write), written at `inBlock`; freezes `source`. */
  static copyOf(source: SlotLineage, inBlock: number, length: number): SlotLineage {
    const bits = SlotLineage.bitsFor(inBlock, length);
    // A whole block written owes nothing to what it was copied from.
    if (bits === null) return new SlotLineage(null, null);
    source.frozen = true;
    return new SlotLineage(source, bits);
  }

  /** Records a write into this (unfrozen) lineage's slot. */
  recordWrite(inBlock: number, length: number): void {
    if (this.written === null) return;
    const bits = SlotLineage.bitsFor(inBlock, length);
    if (bits === null) this.written = null;
    else
      for (let i = 0; i < SECTOR_BITMAP_SIZE; i++) this.written[i] = (this.written[i] ?? 0) | (bits[i] ?? 0);
  }

  /** ORs the sectors written in this lineage (not its ancestors) into `bitmap`; false if all were. */
  addWrittenTo(bitmap: Buffer): boolean {
    if (this.written === null) return false;
    for (let i = 0; i < SECTOR_BITMAP_SIZE; i++) bitmap[i] = (bitmap[i] ?? 0) | (this.written[i] ?? 0);
    return true;
  }

  private static bitsFor(inBlock: number, length: number): Uint8Array | null {
    if (inBlock === 0 && length >= BLOCK_SIZE) return null;
    const bits = new Uint8Array(SECTOR_BITMAP_SIZE);
    const first = Math.floor(inBlock / SECTOR_SIZE);
    const last = Math.floor((inBlock + Math.max(length, 1) - 1) / SECTOR_SIZE);
    for (let sector = first; sector <= last; sector++)
      bits[sector >> 3] = (bits[sector >> 3] ?? 0) | (0x80 >> (sector & 7));
    return bits;
  }
}

/**
 * The sectors of a block that may differ between a disk and its base, as a VHD sector bitmap; or
 * undefined when the whole block must be sent: it was wholly rewritten, or its history does not
 * lead back to the base's content (zeroed and written again, or a history that started again).
 *
 * `base` is the base's lineage for the block, or null when the base does not hold the block
 * (zeros), in which case a history starting from zeros leads back to it.
 */
export function sectorsChangedSince(
  lineage: SlotLineage | undefined,
  base: SlotLineage | null | undefined,
): Buffer | undefined {
  if (lineage === undefined || base === undefined) return undefined;
  const bitmap = Buffer.alloc(SECTOR_BITMAP_SIZE);
  for (let step: SlotLineage | null = lineage; step !== base; step = step.copiedFrom) {
    if (step === null) return undefined;
    if (!step.addWrittenTo(bitmap)) return undefined;
  }
  return bitmap;
}
