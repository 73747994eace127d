import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { BLOCK_SIZE } from './block.constants';

/**
 * The simulator's storage: one file of 2 MiB slots. A slot holds one disk block and is shared by
 * every VDI (snapshot, clone) that has not rewritten it: copy-on-write at block granularity, so a
 * snapshot of a 100 GiB disk is instant and a disk with 1 GiB written takes 1 GiB. Slots are
 * reference-counted; a slot whose count drops to zero is reused.
 */
export class BlockStore {
  private readonly refs: number[] = [];
  private readonly free: number[] = [];

  private constructor(
    private readonly file: FileHandle,
    readonly path: string,
  ) {}

  static async open(stateDir: string): Promise<BlockStore> {
    const path = join(stateDir, 'blocks.dat');
    const file = await open(path, 'a+').then(async (handle) => {
      await handle.close();
      return open(path, 'r+');
    });
    return new BlockStore(file, path);
  }

  /** Rebuilds reference counts from the block maps of every disk after a restart. */
  adopt(slot: number): void {
    while (this.refs.length <= slot) this.refs.push(0);
    this.refs[slot] = (this.refs[slot] ?? 0) + 1;
  }

  /** After `adopt` of every live slot: the others are free. */
  collectFree(): void {
    this.free.length = 0;
    for (let slot = this.refs.length - 1; slot >= 0; slot--) if (this.refs[slot] === 0) this.free.push(slot);
  }

  allocate(): number {
    const slot = this.free.pop() ?? this.refs.length;
    if (slot === this.refs.length) this.refs.push(0);
    this.refs[slot] = 1;
    return slot;
  }

  retain(slot: number): void {
    this.refs[slot] = (this.refs[slot] ?? 0) + 1;
  }

  release(slot: number): void {
    const count = (this.refs[slot] ?? 0) - 1;
    this.refs[slot] = Math.max(count, 0);
    if (count <= 0) this.free.push(slot);
  }

  /** Whether some VDI still references the slot. */
  isInUse(slot: number): boolean {
    return (this.refs[slot] ?? 0) > 0;
  }

  isShared(slot: number): boolean {
    return (this.refs[slot] ?? 0) > 1;
  }

  get usedSlots(): number {
    return this.refs.length - this.free.length;
  }

  async read(slot: number, target: Buffer, offsetInBlock = 0): Promise<void> {
    let done = 0;
    while (done < target.length) {
      const { bytesRead } = await this.file.read(
        target,
        done,
        target.length - done,
        slot * BLOCK_SIZE + offsetInBlock + done,
      );
      if (bytesRead === 0) {
        // A slot past the end of a sparse file reads as zeros.
        target.fill(0, done);
        return;
      }
      done += bytesRead;
    }
  }

  async write(slot: number, source: Buffer, offsetInBlock = 0): Promise<void> {
    let done = 0;
    while (done < source.length) {
      const { bytesWritten } = await this.file.write(
        source,
        done,
        source.length - done,
        slot * BLOCK_SIZE + offsetInBlock + done,
      );
      done += bytesWritten;
    }
  }

  async sync(): Promise<void> {
    await this.file.sync();
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}
