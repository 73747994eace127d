/** A virtual disk readable by block and by byte range: one VHD, or a chain read as one disk. */
export interface VhdDisk {
  readonly virtualSize: number;
  readonly blockCount: number;
  /** Ascending indexes of the blocks that hold data (in any layer for a chain). */
  readonly allocatedBlocks: readonly number[];
  /** The 2 MiB block as the guest sees it (zeros where nothing is allocated). */
  readBlockData(index: number): Promise<Buffer>;
  /** Any byte range inside the virtual size. */
  read(offset: number, length: number): Promise<Buffer>;
}
