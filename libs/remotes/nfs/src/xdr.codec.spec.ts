import { XdrDecodeError, XdrReader, XdrWriter } from './xdr.codec';

describe('XDR codec', () => {
  it('encodes integers big-endian in 4-byte units and 64-bit values in 8 bytes', () => {
    const bytes = new XdrWriter()
      .uint32(0x01020304)
      .int32(-2)
      .uint64(2n ** 40n + 5n)
      .bool(true)
      .toBuffer();
    expect(bytes.toString('hex')).toBe('01020304' + 'fffffffe' + '0000010000000005' + '00000001');
  });

  it('pads variable opaque data and strings to a multiple of 4 bytes with zeros', () => {
    const bytes = new XdrWriter()
      .opaque(Buffer.from([0xaa, 0xbb, 0xcc, 0xdd, 0xee]))
      .string('ab')
      .toBuffer();
    expect(bytes.toString('hex')).toBe('00000005' + 'aabbccddee000000' + '00000002' + '61620000');
  });

  it('keeps large opaque payloads as separate buffers (no copy of WRITE data)', () => {
    const payload = Buffer.alloc(10_000, 7);
    const { buffers, length } = new XdrWriter().uint32(1).opaque(payload).uint32(2).toBuffers();
    expect(buffers).toContain(payload);
    expect(length).toBe(4 + 4 + 10_000 + 4);
  });

  it('reads back what it wrote, padding skipped', () => {
    const bytes = new XdrWriter()
      .uint32(7)
      .string('name.txt')
      .opaque(Buffer.from('xyz'))
      .uint64(123456789012n)
      .fixedOpaque(Buffer.alloc(8, 1))
      .bool(false)
      .toBuffer();
    const reader = new XdrReader(bytes);
    expect(reader.uint32()).toBe(7);
    expect(reader.string()).toBe('name.txt');
    expect(reader.opaque().toString()).toBe('xyz');
    expect(reader.uint64()).toBe(123456789012);
    expect(reader.fixedOpaque(8).equals(Buffer.alloc(8, 1))).toBe(true);
    expect(reader.bool()).toBe(false);
    expect(reader.remaining).toBe(0);
  });

  it('refuses a field that runs past the end of the message, naming the offset', () => {
    const truncated = new XdrWriter().uint32(100).toBuffer();
    expect(() => new XdrReader(truncated).opaque()).toThrow(XdrDecodeError);
    expect(() => new XdrReader(truncated).opaque()).toThrow(/at offset 4/);
    expect(() => new XdrReader(Buffer.alloc(6)).uint64()).toThrow(/runs past the end of a 6-byte message/);
  });

  it('refuses an opaque longer than its declared limit (a file handle above 64 bytes)', () => {
    const handle = new XdrWriter().opaque(Buffer.alloc(65)).toBuffer();
    expect(() => new XdrReader(handle).opaque(64)).toThrow(/65 bytes exceeds its limit of 64/);
  });
});
