/**
 * XDR (RFC 4506) encoding and decoding: big-endian 4-byte units, variable data padded to 4 bytes.
 * Large opaque payloads (WRITE data) are not copied into the writer: callers append them as
 * separate buffers so a 1 MiB block goes to the socket as it is.
 */
export class XdrWriter {
  private readonly parts: Buffer[] = [];
  private current = Buffer.allocUnsafe(256);
  private used = 0;

  uint32(value: number): this {
    this.reserve(4).writeUInt32BE(value >>> 0, this.used);
    this.used += 4;
    return this;
  }

  int32(value: number): this {
    this.reserve(4).writeInt32BE(value, this.used);
    this.used += 4;
    return this;
  }

  uint64(value: bigint | number): this {
    this.reserve(8).writeBigUInt64BE(BigInt(value), this.used);
    this.used += 8;
    return this;
  }

  bool(value: boolean): this {
    return this.uint32(value ? 1 : 0);
  }

  /** Fixed-length opaque (no length prefix), padded. */
  fixedOpaque(data: Buffer): this {
    this.bytes(data);
    return this.padding(data.length);
  }

  /** Variable-length opaque: length, bytes, padding. Large buffers are kept by reference. */
  opaque(data: Buffer): this {
    this.uint32(data.length);
    if (data.length >= 4096) {
      this.flush();
      this.parts.push(data);
    } else {
      this.bytes(data);
    }
    return this.padding(data.length);
  }

  string(value: string): this {
    return this.opaque(Buffer.from(value, 'utf8'));
  }

  /** The encoded message as a list of buffers (for writev) and its total length. */
  toBuffers(): { buffers: Buffer[]; length: number } {
    this.flush();
    const length = this.parts.reduce((sum, part) => sum + part.length, 0);
    return { buffers: [...this.parts], length };
  }

  toBuffer(): Buffer {
    const { buffers, length } = this.toBuffers();
    return Buffer.concat(buffers, length);
  }

  private bytes(data: Buffer): void {
    data.copy(this.reserve(data.length), this.used);
    this.used += data.length;
  }

  private padding(length: number): this {
    const pad = (4 - (length % 4)) % 4;
    if (pad > 0) {
      this.reserve(pad).fill(0, this.used, this.used + pad);
      this.used += pad;
    }
    return this;
  }

  private reserve(size: number): Buffer {
    if (this.used + size > this.current.length) {
      this.flush();
      this.current = Buffer.allocUnsafe(Math.max(256, size));
    }
    return this.current;
  }

  private flush(): void {
    if (this.used > 0) {
      this.parts.push(this.current.subarray(0, this.used));
      this.current = this.current.subarray(this.used);
      this.used = 0;
    }
  }
}

/** Thrown when a reply is shorter than its declared content: a framing or protocol bug, never data. */
export class XdrDecodeError extends Error {
  override readonly name = 'XdrDecodeError';
  readonly code = 'XDR_DECODE';
}

export class XdrReader {
  private offset = 0;

  constructor(private readonly buffer: Buffer) {}

  get remaining(): number {
    return this.buffer.length - this.offset;
  }

  uint32(): number {
    this.need(4, 'uint32');
    const value = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  int32(): number {
    this.need(4, 'int32');
    const value = this.buffer.readInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  /** 64-bit unsigned as a number: sizes and offsets stay below 2^53 on any real file. */
  uint64(): number {
    return Number(this.uint64Big());
  }

  uint64Big(): bigint {
    this.need(8, 'uint64');
    const value = this.buffer.readBigUInt64BE(this.offset);
    this.offset += 8;
    return value;
  }

  bool(): boolean {
    return this.uint32() !== 0;
  }

  /** Fixed-length opaque; the returned buffer shares memory with the reply. */
  fixedOpaque(length: number): Buffer {
    const padded = length + ((4 - (length % 4)) % 4);
    this.need(padded, 'fixed opaque');
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += padded;
    return value;
  }

  opaque(maxLength = Number.MAX_SAFE_INTEGER): Buffer {
    const length = this.uint32();
    if (length > maxLength) {
      throw new XdrDecodeError(
        `XDR opaque of ${length} bytes exceeds its limit of ${maxLength} at offset ${this.offset - 4}`,
      );
    }
    return this.fixedOpaque(length);
  }

  string(maxLength?: number): string {
    return this.opaque(maxLength).toString('utf8');
  }

  skip(bytes: number): void {
    this.need(bytes, 'skipped field');
    this.offset += bytes;
  }

  private need(size: number, what: string): void {
    if (this.offset + size > this.buffer.length) {
      throw new XdrDecodeError(
        `XDR ${what} of ${size} bytes at offset ${this.offset} runs past the end of a ${this.buffer.length}-byte message`,
      );
    }
  }
}
