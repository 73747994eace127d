/** XAPI and VHD move disks in 2 MiB blocks; the simulator stores them the same way. */
export const BLOCK_SIZE = 2 * 1024 * 1024;
/** Changed Block Tracking granularity (one bit per 64 KiB in `VDI.list_changed_blocks`). */
export const CBT_CHUNK_SIZE = 64 * 1024;
export const CBT_CHUNKS_PER_BLOCK = BLOCK_SIZE / CBT_CHUNK_SIZE;

export function blockCount(virtualSize: number): number {
  return Math.ceil(virtualSize / BLOCK_SIZE);
}

const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE);

/** Compares with a shared zero buffer (memcmp in native code, no per-byte JS work). */
export function isZero(buffer: Buffer): boolean {
  let offset = 0;
  while (offset < buffer.length) {
    const length = Math.min(BLOCK_SIZE, buffer.length - offset);
    if (!buffer.subarray(offset, offset + length).equals(ZERO_BLOCK.subarray(0, length))) return false;
    offset += length;
  }
  return true;
}
