import type { DiskBlock, DiskReader } from '@haven/repository';
import { isBitmapFull, overlaySectors, VHD_BLOCK_SIZE, type VhdStreamBlock } from '@haven/vhd';

/**
 * Exported VHD blocks as the whole blocks the repository stores: sectors a block's bitmap marks
 * absent are taken from the base restore point (delta) or are zeros (full); the last block is cut
 * to the disk's end.
 */
export async function* wholeBlocks(
  blocks: AsyncIterable<VhdStreamBlock>,
  virtualSize: number,
  base: DiskReader | undefined,
): AsyncGenerator<DiskBlock, void, undefined> {
  for await (const block of blocks) {
    // A block past the disk's end keeps its index: the writer refuses it, naming it.
    const length = Math.max(0, Math.min(VHD_BLOCK_SIZE, virtualSize - block.index * VHD_BLOCK_SIZE));
    let data: Buffer;
    if (isBitmapFull(block.bitmap)) {
      data = block.data.subarray(0, length);
    } else {
      const merged = Buffer.alloc(VHD_BLOCK_SIZE);
      if (base !== undefined) (await base.readBlock(block.index)).copy(merged);
      overlaySectors(merged, block.data, block.bitmap);
      data = merged.subarray(0, length);
    }
    // The same buffers go to every remote's writer: writers only read them.
    yield { index: block.index, data };
  }
}
