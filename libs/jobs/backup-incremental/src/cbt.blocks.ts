import { VHD_BLOCK_SIZE } from '@haven/vhd';
import { BackupJobError } from './backup-incremental.errors';

/** `VDI.list_changed_blocks` answers one bit per 64 KiB, most significant bit first. */
export const CBT_CHUNK_SIZE = 64 * 1024;

/**
 * The 2 MiB blocks (increasing) holding at least one changed 64 KiB chunk of a CBT bitmap; bits
 * past the disk's end are ignored. A bitmap too short for the disk is refused (it would hide changes).
 */
export function changedBlocksOfBitmap(bitmap: Buffer, virtualSize: number): number[] {
  const chunks = Math.ceil(virtualSize / CBT_CHUNK_SIZE);
  if (bitmap.length * 8 < chunks) {
    throw new BackupJobError(
      'CBT_BITMAP',
      `the changed-block bitmap has ${bitmap.length * 8} bit(s) but the disk of ${virtualSize} bytes needs ${chunks}; ` +
        'reset CBT on the disk (the next backup is then full)',
    );
  }
  const perBlock = VHD_BLOCK_SIZE / CBT_CHUNK_SIZE;
  const blocks: number[] = [];
  for (let byte = 0; byte < bitmap.length && byte * 8 < chunks; byte++) {
    const bits = bitmap[byte] ?? 0;
    if (bits === 0) continue;
    for (let bit = 0; bit < 8; bit++) {
      const chunk = byte * 8 + bit;
      if (chunk >= chunks) break;
      if ((bits & (0x80 >> bit)) === 0) continue;
      const block = Math.floor(chunk / perBlock);
      if (blocks.at(-1) !== block) blocks.push(block);
    }
  }
  return blocks;
}
