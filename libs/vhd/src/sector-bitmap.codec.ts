import { VHD_SECTOR_BITMAP_SIZE, VHD_SECTOR_SIZE, VHD_SECTORS_PER_BLOCK } from './vhd.constants';

/** Bit for sector `sector` of a block: the most significant bit of byte 0 is sector 0. */
export function isSectorPresent(bitmap: Buffer, sector: number): boolean {
  return ((bitmap[sector >> 3] ?? 0) & (0x80 >> (sector & 7))) !== 0;
}

export function isBitmapFull(bitmap: Buffer): boolean {
  for (let i = 0; i < VHD_SECTOR_BITMAP_SIZE; i++) if (bitmap[i] !== 0xff) return false;
  return true;
}

export function sectorBitmapOf(sectors: Iterable<number>): Buffer {
  const bitmap = Buffer.alloc(VHD_SECTOR_BITMAP_SIZE);
  for (const sector of sectors) bitmap[sector >> 3] = (bitmap[sector >> 3] ?? 0) | (0x80 >> (sector & 7));
  return bitmap;
}

/** Copies into `target` the sectors of `source` whose bit is set, coalescing runs of set bits. */
export function overlaySectors(target: Buffer, source: Buffer, bitmap: Buffer): void {
  let sector = 0;
  while (sector < VHD_SECTORS_PER_BLOCK) {
    if (!isSectorPresent(bitmap, sector)) {
      sector++;
      continue;
    }
    const start = sector;
    while (sector < VHD_SECTORS_PER_BLOCK && isSectorPresent(bitmap, sector)) sector++;
    source.copy(target, start * VHD_SECTOR_SIZE, start * VHD_SECTOR_SIZE, sector * VHD_SECTOR_SIZE);
  }
}
