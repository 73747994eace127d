import type { DiskBlock, DiskReader } from '@haven/repository';
import {
  BlockBufferPool,
  isBitmapFull,
  overlaySectors,
  VHD_BLOCK_SIZE,
  type VhdStreamBlock,
} from '@haven/vhd';

/** Merged blocks kept for reuse: the writer releases each once it has hashed or sealed it. */
const MERGE_BUFFERS_KEPT = 6;

/**
 * Exported VHD blocks as the whole blocks the repository stores: sectors a block's bitmap marks
 * absent are taken from the base restore point (delta) or are zeros (full); the last block is cut
 * to the disk's end. A block's `release` is passed on (full blocks) or called once its sectors are
 * merged into a buffer of this merger's own pool, which the merged block's `release` gives back.
 */
export async function* wholeBlocks(
  blocks: AsyncIterable<VhdStreamBlock>,
  virtualSize: number,
  base: DiskReader | undefined,
): AsyncGenerator<DiskBlock, void, undefined> {
  const merges = new BlockBufferPool(VHD_BLOCK_SIZE, MERGE_BUFFERS_KEPT);
  for await (const block of blocks) {
    // A block past the disk's end keeps its index: the writer refuses it, naming it.
    const length = Math.max(0, Math.min(VHD_BLOCK_SIZE, virtualSize - block.index * VHD_BLOCK_SIZE));
    if (isBitmapFull(block.bitmap)) {
      // The same buffer goes to every remote's writer: writers only read it, unless a frame comes
      // with it (one writer: exclusiveFrame in disk.transfer.ts).
      const data = block.data.subarray(0, length);
      yield {
        index: block.index,
        data,
        ...(block.release !== undefined ? { release: block.release } : {}),
        ...(block.frame !== undefined ? { frame: block.frame } : {}),
      };
      continue;
    }
    const merged = merges.acquire();
    try {
      const from = base === undefined ? undefined : await base.readBlock(block.index);
      const copied = from === undefined ? 0 : from.copy(merged);
      merged.fill(0, copied);
      overlaySectors(merged, block.data, block.bitmap);
    } catch (error) {
      merges.release(merged);
      throw error;
    }
    block.release?.();
    yield { index: block.index, data: merged.subarray(0, length), release: () => merges.release(merged) };
  }
}
