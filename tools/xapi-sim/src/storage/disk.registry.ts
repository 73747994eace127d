import { XapiFailure } from '../xapi.failure';
import { BLOCK_SIZE, CBT_CHUNKS_PER_BLOCK } from './block.constants';
import type { BlockStore } from './block.store';
import type { SlotLineage } from './slot.lineage';
import { VirtualDisk, type CbtLog, type DiskHost } from './virtual-disk';

export interface PersistedCbt {
  lineage: string;
  frozenAt: number | null;
  /** base64 of [block u32, 32 x u32 sequences] records. */
  chunks: string;
}

export interface PersistedDisk {
  vdi: string;
  sr: string;
  virtualSize: number;
  /** Flat [block, slot, block, slot, ...]. */
  blocks: number[];
  cbt: PersistedCbt | null;
}

export interface SrCapacity {
  /** Bytes the SR may hold (its physical_size). */
  capacity(sr: string): number;
  /** Told when an SR's utilisation or a disk's allocation changed. */
  usageChanged(sr: string, disk: VirtualDisk): void;
}

/** Every VDI's content, over one block store, with per-SR space accounting (SR_FULL). */
export class DiskRegistry implements DiskHost {
  private readonly disks = new Map<string, VirtualDisk>();
  /** Per SR: slot -> number of VDIs of that SR referencing it (the SR's unique allocated blocks). */
  private readonly srSlots = new Map<string, Map<number, number>>();
  private cbtSequence = 1;
  /** Per slot, how its content came to be (not persisted: unknown after a restart). */
  private readonly lineages = new Map<number, SlotLineage>();

  constructor(
    readonly blocks: BlockStore,
    private readonly srs: SrCapacity,
  ) {}

  get(vdiRef: string): VirtualDisk {
    const disk = this.disks.get(vdiRef);
    if (disk === undefined) throw new XapiFailure('VDI_MISSING', ['', vdiRef]);
    return disk;
  }

  find(vdiRef: string): VirtualDisk | undefined {
    return this.disks.get(vdiRef);
  }

  create(vdiRef: string, sr: string, virtualSize: number): VirtualDisk {
    const disk = new VirtualDisk(this, vdiRef, sr, virtualSize);
    this.disks.set(vdiRef, disk);
    this.srs.usageChanged(sr, disk);
    return disk;
  }

  /** A copy-on-write copy of `source` (snapshot, clone, copy): blocks shared, nothing read. */
  cloneDisk(source: VirtualDisk, vdiRef: string, sr: string, cbt: CbtLog | null): VirtualDisk {
    const map = new Map(source.blockMap);
    const disk = new VirtualDisk(this, vdiRef, sr, source.virtualSize, map, cbt);
    for (const slot of map.values()) {
      this.blocks.retain(slot);
      this.countSrSlot(sr, slot, 1);
    }
    this.disks.set(vdiRef, disk);
    this.srs.usageChanged(sr, disk);
    return disk;
  }

  destroy(vdiRef: string): void {
    const disk = this.disks.get(vdiRef);
    if (disk === undefined) return;
    for (const slot of disk.blockMap.values()) this.releaseSlot(disk, slot);
    disk.blockMap.clear();
    this.disks.delete(vdiRef);
    this.srs.usageChanged(disk.sr, disk);
  }

  srUtilisation(sr: string): number {
    return (this.srSlots.get(sr)?.size ?? 0) * BLOCK_SIZE;
  }

  allocateSlot(disk: VirtualDisk): number {
    const used = this.srUtilisation(disk.sr);
    const capacity = this.srs.capacity(disk.sr);
    if (used + BLOCK_SIZE > capacity)
      throw new XapiFailure('SR_FULL', [String(used + BLOCK_SIZE), String(capacity)]);
    const slot = this.blocks.allocate();
    this.lineages.delete(slot);
    this.countSrSlot(disk.sr, slot, 1);
    return slot;
  }

  releaseSlot(disk: VirtualDisk, slot: number): void {
    this.blocks.release(slot);
    this.countSrSlot(disk.sr, slot, -1);
    if (!this.blocks.isInUse(slot)) this.lineages.delete(slot);
  }

  lineageOf(slot: number): SlotLineage | undefined {
    return this.lineages.get(slot);
  }

  setLineage(slot: number, lineage: SlotLineage | undefined): void {
    if (lineage === undefined) this.lineages.delete(slot);
    else this.lineages.set(slot, lineage);
  }

  nextCbtSequence(): number {
    return this.cbtSequence++;
  }

  diskChanged(disk: VirtualDisk): void {
    this.srs.usageChanged(disk.sr, disk);
  }

  persist(): { cbtSequence: number; disks: PersistedDisk[] } {
    const disks: PersistedDisk[] = [];
    for (const disk of this.disks.values()) {
      const blocks: number[] = [];
      for (const [block, slot] of disk.blockMap) blocks.push(block, slot);
      disks.push({
        vdi: disk.vdiRef,
        sr: disk.sr,
        virtualSize: disk.virtualSize,
        blocks,
        cbt: disk.cbt === null ? null : persistCbt(disk.cbt),
      });
    }
    return { cbtSequence: this.cbtSequence, disks };
  }

  restore(cbtSequence: number, disks: readonly PersistedDisk[]): void {
    this.cbtSequence = cbtSequence;
    for (const persisted of disks) {
      const map = new Map<number, number>();
      for (let i = 0; i + 1 < persisted.blocks.length; i += 2) {
        const block = persisted.blocks[i] ?? 0;
        const slot = persisted.blocks[i + 1] ?? 0;
        map.set(block, slot);
        this.blocks.adopt(slot);
        this.countSrSlot(persisted.sr, slot, 1);
      }
      const cbt = persisted.cbt === null ? null : restoreCbt(persisted.cbt);
      this.disks.set(
        persisted.vdi,
        new VirtualDisk(this, persisted.vdi, persisted.sr, persisted.virtualSize, map, cbt),
      );
    }
    this.blocks.collectFree();
  }

  private countSrSlot(sr: string, slot: number, delta: 1 | -1): void {
    let slots = this.srSlots.get(sr);
    if (slots === undefined) {
      slots = new Map();
      this.srSlots.set(sr, slots);
    }
    const count = (slots.get(slot) ?? 0) + delta;
    if (count <= 0) slots.delete(slot);
    else slots.set(slot, count);
  }
}

function persistCbt(cbt: CbtLog): PersistedCbt {
  const record = 4 * (1 + CBT_CHUNKS_PER_BLOCK);
  const buffer = Buffer.alloc(cbt.chunks.size * record);
  let offset = 0;
  for (const [block, sequences] of cbt.chunks) {
    buffer.writeUInt32LE(block, offset);
    for (let i = 0; i < CBT_CHUNKS_PER_BLOCK; i++)
      buffer.writeUInt32LE(sequences[i] ?? 0, offset + 4 + 4 * i);
    offset += record;
  }
  return { lineage: cbt.lineage, frozenAt: cbt.frozenAt, chunks: buffer.toString('base64') };
}

function restoreCbt(persisted: PersistedCbt): CbtLog {
  const buffer = Buffer.from(persisted.chunks, 'base64');
  const record = 4 * (1 + CBT_CHUNKS_PER_BLOCK);
  const chunks = new Map<number, Uint32Array>();
  for (let offset = 0; offset + record <= buffer.length; offset += record) {
    const sequences = new Uint32Array(CBT_CHUNKS_PER_BLOCK);
    for (let i = 0; i < CBT_CHUNKS_PER_BLOCK; i++) sequences[i] = buffer.readUInt32LE(offset + 4 + 4 * i);
    chunks.set(buffer.readUInt32LE(offset), sequences);
  }
  return { lineage: persisted.lineage, frozenAt: persisted.frozenAt, chunks };
}
