import type { DiskBlock } from '@haven/repository';
import { VHD_BLOCK_SIZE } from '@haven/vhd';
import { BackupJobError } from './backup-incremental.errors';

/**
 * Cuts a raw read of the listed blocks (concatenated, the disk's last block short) into whole
 * blocks: one fresh buffer per block, as the repository writer owns what it is given. The stream
 * must hold exactly those bytes; a short or long one fails naming the disk.
 */
export async function* rawBlocks(
  source: AsyncIterable<Buffer>,
  blocks: readonly number[],
  virtualSize: number,
  label: string,
): AsyncGenerator<DiskBlock, void, undefined> {
  const lengthOf = (block: number): number => Math.min(VHD_BLOCK_SIZE, virtualSize - block * VHD_BLOCK_SIZE);
  let position = 0;
  let current: Buffer | undefined;
  let filled = 0;
  const iterator = source[Symbol.asyncIterator]();
  try {
    for (;;) {
      const next = await iterator.next();
      if (next.done === true) break;
      let chunk = next.value;
      while (chunk.length > 0) {
        if (position >= blocks.length) {
          throw new BackupJobError(
            'DISK_MISMATCH',
            `the read of ${label} sent more than the ${blocks.length} block(s) asked for; retry the backup`,
          );
        }
        const block = blocks[position] ?? 0;
        current ??= Buffer.allocUnsafe(lengthOf(block));
        const take = Math.min(current.length - filled, chunk.length);
        chunk.copy(current, filled, 0, take);
        filled += take;
        chunk = chunk.subarray(take);
        if (filled === current.length) {
          const data = current;
          current = undefined;
          filled = 0;
          position++;
          yield { index: block, data };
        }
      }
    }
  } finally {
    await iterator.return?.();
  }
  if (position !== blocks.length) {
    throw new BackupJobError(
      'DISK_MISMATCH',
      `the read of ${label} ended after ${position} of ${blocks.length} block(s); retry the backup`,
    );
  }
}
