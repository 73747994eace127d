import { changedBlocksOfBitmap } from './cbt.blocks';

const MiB = 1024 * 1024;

/** A bitmap with the given 64 KiB chunks set (MSB first, as XAPI sends it). */
function bitmapOf(chunks: readonly number[], bits: number): Buffer {
  const bitmap = Buffer.alloc(Math.ceil(bits / 8));
  for (const chunk of chunks) bitmap[chunk >> 3] = (bitmap[chunk >> 3] ?? 0) | (0x80 >> (chunk & 7));
  return bitmap;
}

describe('CBT bitmap to 2 MiB blocks', () => {
  it('maps every changed 64 KiB chunk to its 2 MiB block, once, in order', () => {
    // 32 chunks per block: chunk 0 and 31 are block 0, 32 is block 1, 100 is block 3, 255 is block 7
    const bitmap = bitmapOf([0, 31, 32, 100, 255], 256);
    expect(changedBlocksOfBitmap(bitmap, 16 * MiB)).toEqual([0, 1, 3, 7]);
  });

  it('gives no block for an empty bitmap', () => {
    expect(changedBlocksOfBitmap(Buffer.alloc(32), 16 * MiB)).toEqual([]);
  });

  it('counts a short last block, and ignores padding bits past the disk end', () => {
    // 4 MiB + 64 KiB: 65 chunks, the 65th (index 64) lies in block 2, which is 64 KiB long
    const size = 4 * MiB + 64 * 1024;
    const bitmap = bitmapOf([64, 65, 70], 72);
    expect(changedBlocksOfBitmap(bitmap, size)).toEqual([2]);
  });

  it('refuses a bitmap too short for the disk, naming the sizes', () => {
    expect(() => changedBlocksOfBitmap(Buffer.alloc(2), 2 * MiB)).toThrow(
      /bitmap has 16 bit\(s\) but the disk of 2097152 bytes needs 32/,
    );
  });
});
