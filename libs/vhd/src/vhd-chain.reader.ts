import { VHD_BLOCK_SIZE } from './vhd.constants';
import { VhdFormatError } from './vhd-format.error';
import { isBitmapFull, overlaySectors } from './sector-bitmap.codec';
import { readRangeByBlocks, type VhdImage } from './vhd-image.reader';
import type { VhdDisk } from './vhd-disk.contract';

/**
 * A base VHD and its differencing children read as one disk. A child's sector wins where its sector
 * bitmap has the bit set; elsewhere the parent's data shows through. The chain has the size of its
 * newest image (a child may have been resized).
 */
export class VhdChain implements VhdDisk {
  readonly allocatedBlocks: readonly number[];

  /** `images` from the base (dynamic) to the newest child. */
  constructor(readonly images: readonly VhdImage[]) {
    const base = images.at(0);
    if (base === undefined)
      throw new VhdFormatError('VHD_CHAIN_PARENT', 'a VHD chain needs at least one image');
    images.forEach((image, i) => {
      if (i === 0) return;
      const parent = images[i - 1];
      if (image.type !== 'differencing') {
        throw new VhdFormatError(
          'VHD_CHAIN_PARENT',
          `image ${i} of the chain (uuid ${image.uuid}) is ${image.type}, only the base may be; order images from base to newest`,
        );
      }
      if (image.header.parentUuid !== parent.uuid) {
        throw new VhdFormatError(
          'VHD_CHAIN_PARENT',
          `image ${i} (uuid ${image.uuid}) names parent ${image.header.parentUuid} but image ${i - 1} is ${parent.uuid}; the chain is out of order or mixes disks`,
        );
      }
    });
    const blockCount = this.blockCount;
    const union = new Set<number>();
    for (const image of images)
      for (const index of image.allocatedBlocks) if (index < blockCount) union.add(index);
    this.allocatedBlocks = [...union].sort((a, b) => a - b);
  }

  private get top(): VhdImage {
    const top = this.images.at(-1);
    if (top === undefined) throw new VhdFormatError('VHD_CHAIN_PARENT', 'empty chain');
    return top;
  }

  get virtualSize(): number {
    return this.top.virtualSize;
  }

  get blockCount(): number {
    return this.top.blockCount;
  }

  async readBlockData(index: number): Promise<Buffer> {
    if (!Number.isInteger(index) || index < 0 || index >= this.blockCount) {
      throw new VhdFormatError(
        'VHD_RANGE',
        `block ${index} does not exist; the disk has ${this.blockCount} blocks`,
      );
    }
    // Walk down from the newest image until one layer covers every sector, then overlay upwards.
    const layers: { bitmap: Buffer; data: Buffer; full: boolean }[] = [];
    for (let i = this.images.length - 1; i >= 0; i--) {
      const image = this.images[i];
      if (!image.hasBlock(index)) continue;
      const block = await image.readBlock(index);
      if (block === undefined) continue;
      const full = image.type === 'dynamic' || isBitmapFull(block.bitmap);
      layers.push({ ...block, full });
      if (full) break;
    }
    const bottom = layers.at(-1);
    if (bottom === undefined) return Buffer.alloc(VHD_BLOCK_SIZE);
    if (layers.length === 1 && bottom.full) return bottom.data;
    const result = Buffer.alloc(VHD_BLOCK_SIZE);
    for (const layer of layers.reverse()) {
      if (layer.full) layer.data.copy(result);
      else overlaySectors(result, layer.data, layer.bitmap);
    }
    return result;
  }

  read(offset: number, length: number): Promise<Buffer> {
    return readRangeByBlocks(this, offset, length);
  }

  async close(): Promise<void> {
    for (const image of this.images) await image.close();
  }
}
