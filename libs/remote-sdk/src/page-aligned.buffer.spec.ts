import { allocatePageAligned, DIRECT_IO_ALIGNMENT, isPageAligned } from './page-aligned.buffer';

describe('page-aligned buffers', () => {
  it('are the start of their own memory, with room after them up to the next 64 KiB', () => {
    const buffer = allocatePageAligned(2 * 1024 * 1024 + 60);
    expect(buffer.length).toBe(2 * 1024 * 1024 + 60);
    expect(buffer.byteOffset).toBe(0);
    expect(buffer.buffer.byteLength).toBe(2 * 1024 * 1024 + 64 * 1024);
  });

  it('are known aligned at any page boundary of their memory, with bytes', () => {
    const buffer = allocatePageAligned(3 * DIRECT_IO_ALIGNMENT);
    expect(isPageAligned(buffer)).toBe(true);
    expect(isPageAligned(buffer.subarray(0, 10))).toBe(true);
    expect(isPageAligned(buffer.subarray(DIRECT_IO_ALIGNMENT, DIRECT_IO_ALIGNMENT + 1))).toBe(true);
  });

  it('are told from memory not known aligned, an unaligned offset, or no bytes', () => {
    expect(isPageAligned(Buffer.allocUnsafeSlow(DIRECT_IO_ALIGNMENT))).toBe(false);
    const buffer = allocatePageAligned(64 * 1024);
    expect(isPageAligned(buffer.subarray(100, 5000))).toBe(false);
    expect(isPageAligned(buffer.subarray(0, 0))).toBe(false);
    expect(isPageAligned(buffer.subarray(60 * 1024, 64 * 1024))).toBe(true);
  });

  it('refuse a size that is not a positive integer', () => {
    expect(() => allocatePageAligned(0)).toThrow(/positive integer, got 0/);
    expect(() => allocatePageAligned(1.5)).toThrow(/positive integer, got 1.5/);
  });
});
