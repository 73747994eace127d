import { randomUUID } from 'node:crypto';
import { XapiFailure } from '../xapi.failure';
import { BLOCK_SIZE, CBT_CHUNK_SIZE, CBT_CHUNKS_PER_BLOCK, blockCount, isZero } from './block.constants';
import type { BlockStore } from './block.store';
import { SlotLineage, sectorsChangedSince } from './slot.lineage';

/**
 * Changed Block Tracking of one VDI: for each 64 KiB chunk ever written since CBT was enabled, the
 * sequence number of its last write. Snapshots copy the log and freeze it at `frozenAt`, so
 * "changed between snapshot A and B" is "chunks whose sequence in B is newer than A's freeze".
 */
export interface CbtLog {
  lineage: string;
  frozenAt: number | null;
  chunks: Map<number, Uint32Array>;
}

/**
 * What a disk needs from its registry: slot allocation with per-SR accounting, the lineage of each
 * slot's content, CBT sequence.
 */
export interface DiskHost {
  readonly blocks: BlockStore;
  allocateSlot(disk: VirtualDisk): number;
  releaseSlot(disk: VirtualDisk, slot: number): void;
  lineageOf(slot: number): SlotLineage | undefined;
  setLineage(slot: number, lineage: SlotLineage | undefined): void;
  nextCbtSequence(): number;
  diskChanged(disk: VirtualDisk): void;
}

/** The content of one VDI: a sparse map block index -> slot of the block store. */
export class VirtualDisk {
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly host: DiskHost,
    readonly vdiRef: string,
    public sr: string,
    public virtualSize: number,
    readonly blockMap: Map<number, number> = new Map(),
    public cbt: CbtLog | null = null,
  ) {}

  get blockCount(): number {
    return blockCount(this.virtualSize);
  }

  get allocatedBytes(): number {
    return this.blockMap.size * BLOCK_SIZE;
  }

  /** Allocated block indexes in increasing order (the order a VHD export writes them). */
  allocatedBlocks(): number[] {
    return [...this.blockMap.keys()].sort((a, b) => a - b);
  }

  slotOf(block: number): number | undefined {
    return this.blockMap.get(block);
  }

  /**
   * The sectors of `block` written since `base` held it, as a VHD sector bitmap; undefined when the
   * whole block must be sent (wholly rewritten, zeroed, or its history unknown).
   */
  sectorsWrittenSince(base: VirtualDisk, block: number): Buffer | undefined {
    const slot = this.blockMap.get(block);
    if (slot === undefined) return undefined;
    const baseSlot = base.blockMap.get(block);
    return sectorsChangedSince(
      this.host.lineageOf(slot),
      baseSlot === undefined ? null : this.host.lineageOf(baseSlot),
    );
  }

  /** Reads a whole block into `target` (2 MiB); false (and zeros) when it is not allocated. */
  async readBlockInto(block: number, target: Buffer): Promise<boolean> {
    const slot = this.blockMap.get(block);
    if (slot === undefined) {
      target.fill(0);
      return false;
    }
    await this.host.blocks.read(slot, target);
    return true;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.checkRange(offset, length);
    const result = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const position = offset + done;
      const block = Math.floor(position / BLOCK_SIZE);
      const inBlock = position - block * BLOCK_SIZE;
      const piece = Math.min(BLOCK_SIZE - inBlock, length - done);
      const slot = this.blockMap.get(block);
      if (slot !== undefined) await this.host.blocks.read(slot, result.subarray(done, done + piece), inBlock);
      done += piece;
    }
    return result;
  }

  /** Writes bytes at `offset`, copying shared blocks first (copy-on-write); all-zero blocks are freed. */
  write(offset: number, data: Buffer): Promise<void> {
    this.checkRange(offset, data.length);
    return this.serialized(async () => {
      let done = 0;
      while (done < data.length) {
        const position = offset + done;
        const block = Math.floor(position / BLOCK_SIZE);
        const inBlock = position - block * BLOCK_SIZE;
        const piece = Math.min(BLOCK_SIZE - inBlock, data.length - done);
        await this.writeInBlock(block, inBlock, data.subarray(done, done + piece));
        done += piece;
      }
      this.host.diskChanged(this);
    });
  }

  /** Drops every block (VDI.data_destroy, overwrite with an image). */
  discardAll(): Promise<void> {
    return this.serialized(() => {
      for (const [block, slot] of this.blockMap) {
        this.host.releaseSlot(this, slot);
        this.blockMap.delete(block);
      }
      this.host.diskChanged(this);
      return Promise.resolve();
    });
  }

  resize(newSize: number): Promise<void> {
    return this.serialized(() => {
      const blocks = blockCount(newSize);
      for (const [block, slot] of this.blockMap) {
        if (block >= blocks) {
          this.host.releaseSlot(this, slot);
          this.blockMap.delete(block);
        }
      }
      this.virtualSize = newSize;
      this.host.diskChanged(this);
      return Promise.resolve();
    });
  }

  enableCbt(): void {
    this.cbt ??= { lineage: randomUUID(), frozenAt: null, chunks: new Map() };
  }

  disableCbt(): void {
    this.cbt = null;
  }

  /** A copy of the CBT log frozen now (for snapshots); null when CBT is off. */
  snapshotCbt(frozen: boolean): CbtLog | null {
    if (this.cbt === null) return null;
    const chunks = new Map<number, Uint32Array>();
    for (const [block, sequences] of this.cbt.chunks) chunks.set(block, sequences.slice());
    return {
      lineage: this.cbt.lineage,
      frozenAt: frozen ? this.host.nextCbtSequence() : null,
      chunks,
    };
  }

  /** Runs `task` after every previously queued write of this disk (no interleaved CoW). */
  serialized<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task);
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new XapiFailure('VDI_IO_ERROR', [
        `invalid range offset=${offset} length=${length} on ${this.vdiRef}`,
      ]);
    }
    if (offset + length > this.virtualSize) {
      throw new XapiFailure('VDI_IO_ERROR', [
        `range ${offset}+${length} ends past the virtual size ${this.virtualSize} of ${this.vdiRef}`,
      ]);
    }
  }

  private async writeInBlock(block: number, inBlock: number, piece: Buffer): Promise<void> {
    this.trackCbt(block, inBlock, piece.length);
    const slot = this.blockMap.get(block);
    const whole = inBlock === 0 && piece.length === BLOCK_SIZE;
    if (whole && isZero(piece)) {
      if (slot !== undefined) {
        this.host.releaseSlot(this, slot);
        this.blockMap.delete(block);
      }
      return;
    }
    if (slot === undefined) {
      if (isZero(piece)) return;
      const fresh = this.host.allocateSlot(this);
      this.blockMap.set(block, fresh);
      this.host.setLineage(fresh, SlotLineage.fresh(inBlock, piece.length));
      if (whole) {
        await this.host.blocks.write(fresh, piece);
      } else {
        // A reused slot holds stale bytes: write the whole block.
        const full = Buffer.alloc(BLOCK_SIZE);
        piece.copy(full, inBlock);
        await this.host.blocks.write(fresh, full);
      }
      return;
    }
    if (!this.host.blocks.isShared(slot)) {
      const lineage = this.host.lineageOf(slot);
      // A frozen lineage is another's origin: this slot's new content starts a lineage of its own.
      if (lineage === undefined || lineage.frozen)
        this.host.setLineage(slot, SlotLineage.copyOf(this.originOf(slot), inBlock, piece.length));
      else lineage.recordWrite(inBlock, piece.length);
      await this.host.blocks.write(slot, piece, inBlock);
      return;
    }
    // Copy-on-write: the slot is shared with a snapshot or clone.
    const full = Buffer.allocUnsafe(BLOCK_SIZE);
    if (whole) piece.copy(full);
    else {
      await this.host.blocks.read(slot, full);
      piece.copy(full, inBlock);
    }
    const fresh = this.host.allocateSlot(this);
    this.blockMap.set(block, fresh);
    this.host.setLineage(fresh, SlotLineage.copyOf(this.originOf(slot), inBlock, piece.length));
    this.host.releaseSlot(this, slot);
    await this.host.blocks.write(fresh, full);
  }

  /**
   * The lineage of `slot`'s current content, for a copy of it: one of unknown history when none is
   * known (after a restart) or it is too long, set on the slot so that a base sharing it matches.
   */
  private originOf(slot: number): SlotLineage {
    const known = this.host.lineageOf(slot);
    if (known?.copyable === true) return known;
    const origin = SlotLineage.ofUnknownHistory();
    this.host.setLineage(slot, origin);
    return origin;
  }

  private trackCbt(block: number, inBlock: number, length: number): void {
    const cbt = this.cbt;
    if (cbt === null || length === 0) return;
    let sequences = cbt.chunks.get(block);
    if (sequences === undefined) {
      sequences = new Uint32Array(CBT_CHUNKS_PER_BLOCK);
      cbt.chunks.set(block, sequences);
    }
    const sequence = this.host.nextCbtSequence();
    const first = Math.floor(inBlock / CBT_CHUNK_SIZE);
    const last = Math.floor((inBlock + length - 1) / CBT_CHUNK_SIZE);
    for (let chunk = first; chunk <= last; chunk++) sequences[chunk] = sequence;
  }
}

/** `VDI.list_changed_blocks(from, to)`: base64 bitmap, one bit per 64 KiB, most significant bit first. */
export function changedBlocksBitmap(
  from: VirtualDisk,
  to: VirtualDisk,
  fromRef: string,
  toRef: string,
): string {
  if (from.cbt === null) throw new XapiFailure('VDI_NO_CBT_METADATA', [fromRef]);
  if (to.cbt === null) throw new XapiFailure('VDI_NO_CBT_METADATA', [toRef]);
  if (from.cbt.lineage !== to.cbt.lineage) {
    throw new XapiFailure('SR_BACKEND_FAILURE_460', [
      '',
      `Failed to calculate changed blocks for given VDIs: ${fromRef} and ${toRef} do not share a CBT log`,
      '',
    ]);
  }
  const since = from.cbt.frozenAt ?? 0;
  const chunkCount = Math.ceil(to.virtualSize / CBT_CHUNK_SIZE);
  const bitmap = Buffer.alloc(Math.ceil(chunkCount / 8));
  for (const [block, sequences] of to.cbt.chunks) {
    for (let chunk = 0; chunk < CBT_CHUNKS_PER_BLOCK; chunk++) {
      const index = block * CBT_CHUNKS_PER_BLOCK + chunk;
      if (index >= chunkCount) break;
      if ((sequences[chunk] ?? 0) > since)
        bitmap[index >> 3] = (bitmap[index >> 3] ?? 0) | (0x80 >> (index & 7));
    }
  }
  return bitmap.toString('base64');
}
