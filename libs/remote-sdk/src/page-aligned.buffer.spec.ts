import { allocatePageAligned, DIRECT_IO_ALIGNMENT, directWriteView } from './page-aligned.buffer';

describe('page-aligned buffers', () => {
  it('are the start of their own memory, with room after them up to the next 64 KiB', () => {
    const buffer = allocatePageAligned(2 * 1024 * 1024 + 60);
    expect(buffer.length).toBe(2 * 1024 * 1024 + 60);
    expect(buffer.byteOffset).toBe(0);
    expect(buffer.buffer.byteLength).toBe(2 * 1024 * 1024 + 64 * 1024);
  });

  it('give a direct-write view padded with zeros to the alignment, over the same memory', () => {
    const buffer = allocatePageAligned(3 * DIRECT_IO_ALIGNMENT);
    buffer.fill(0xee);
    const body = buffer.subarray(0, DIRECT_IO_ALIGNMENT + 10);
    const view = directWriteView(body);
    expect(view?.length).toBe(2 * DIRECT_IO_ALIGNMENT);
    expect(view?.buffer).toBe(buffer.buffer);
    expect(view?.subarray(0, body.length).every((byte) => byte === 0xee)).toBe(true);
    // Bytes left from an earlier use never reach the file, even past its end.
    expect(view?.subarray(body.length).every((byte) => byte === 0)).toBe(true);
    // An aligned length needs no padding; an aligned offset inside the memory is fine too.
    expect(directWriteView(buffer.subarray(0, DIRECT_IO_ALIGNMENT))?.length).toBe(DIRECT_IO_ALIGNMENT);
    expect(directWriteView(buffer.subarray(DIRECT_IO_ALIGNMENT, DIRECT_IO_ALIGNMENT + 1))?.length).toBe(
      DIRECT_IO_ALIGNMENT,
    );
  });

  it('give no view for memory that is not known aligned, an unaligned offset, or no bytes', () => {
    expect(directWriteView(Buffer.allocUnsafeSlow(DIRECT_IO_ALIGNMENT))).toBeUndefined();
    const buffer = allocatePageAligned(64 * 1024);
    expect(directWriteView(buffer.subarray(100, 5000))).toBeUndefined();
    expect(directWriteView(buffer.subarray(0, 0))).toBeUndefined();
    expect(directWriteView(buffer.subarray(60 * 1024, 64 * 1024))?.length).toBe(DIRECT_IO_ALIGNMENT);
  });

  it('refuse a size that is not a positive integer', () => {
    expect(() => allocatePageAligned(0)).toThrow(/positive integer, got 0/);
    expect(() => allocatePageAligned(1.5)).toThrow(/positive integer, got 1.5/);
  });
});
