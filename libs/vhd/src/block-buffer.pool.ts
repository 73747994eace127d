/**
 * Where a reader takes the buffers it fills with block data, and gives them back once every
 * consumer is finished with them (see VhdStreamBlock.release).
 */
export interface BlockBufferSource {
  /** A buffer of the source's size; its content is unspecified. */
  acquire(): Buffer;
  /** Takes back a buffer from `acquire`; nothing may read or write it afterwards. */
  release(buffer: Buffer): void;
  /**
   * The writable memory a buffer from `acquire` sits in, when the source leaves room before each
   * (BlockBufferPoolOptions.headroom): the buffer is its end. A consumer that owns the buffer alone
   * may write there, e.g. a header, and use the whole as one object without copying the data.
   */
  frameOf?(buffer: Buffer): Buffer | undefined;
}

export interface BlockBufferPoolOptions {
  /** Bytes of room before each buffer (frameOf); 0 by default. */
  headroom?: number;
  /**
   * Makes the memory of one buffer and its room: `length` bytes at the start of memory of its own
   * (default Buffer.allocUnsafeSlow; page-aligned memory lets a frame be written around the page
   * cache).
   */
  allocate?: (length: number) => Buffer;
}

/**
 * Reusable block buffers of one size: at most `keep` are kept for reuse. Lending is not capped (a
 * consumer that fails may never give its buffers back; those are left to the garbage collector),
 * the pace is set by the consumers' back-pressure. Reusing buffers saves a fresh 2 MiB allocation
 * per block (page faults, V8 full collections under external memory pressure).
 */
export class BlockBufferPool implements BlockBufferSource {
  private readonly free: ArrayBufferLike[] = [];
  private readonly lent = new Set<ArrayBufferLike>();
  private readonly headroom: number;
  private readonly allocate: (length: number) => Buffer;
  /** Buffers allocated so far (not reused): tests and diagnostics. */
  allocated = 0;

  constructor(
    readonly size: number,
    readonly keep: number,
    options: BlockBufferPoolOptions = {},
  ) {
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw new RangeError(`block buffer size must be a positive integer, got ${size}`);
    }
    if (!Number.isSafeInteger(keep) || keep < 0) {
      throw new RangeError(`block buffers kept must be a non-negative integer, got ${keep}`);
    }
    this.headroom = options.headroom ?? 0;
    if (!Number.isSafeInteger(this.headroom) || this.headroom < 0) {
      throw new RangeError(`block buffer headroom must be a non-negative integer, got ${this.headroom}`);
    }
    // allocUnsafeSlow: never a slice of Node's shared pool, so the whole ArrayBuffer is ours.
    this.allocate = options.allocate ?? ((length) => Buffer.allocUnsafeSlow(length));
  }

  acquire(): Buffer {
    let whole = this.free.pop();
    if (whole === undefined) {
      const made = this.allocate(this.headroom + this.size);
      if (made.byteOffset !== 0 || made.length < this.headroom + this.size) {
        throw new RangeError(
          `block buffer allocator made ${made.length} bytes at offset ${made.byteOffset}, not ${this.headroom + this.size} at 0`,
        );
      }
      whole = made.buffer;
      this.allocated++;
    }
    this.lent.add(whole);
    return Buffer.from(whole, this.headroom, this.size);
  }

  release(buffer: Buffer): void {
    const whole = buffer.buffer;
    if (!this.lent.delete(whole)) {
      throw new RangeError(
        `a ${buffer.length}-byte buffer was released to a pool of ${this.size}-byte block buffers that did not lend it (or it was released twice)`,
      );
    }
    if (this.free.length < this.keep) this.free.push(whole);
  }

  /** The headroom and `buffer` as one view, while `buffer` is lent; undefined without headroom. */
  frameOf(buffer: Buffer): Buffer | undefined {
    if (this.headroom === 0 || !this.lent.has(buffer.buffer) || buffer.byteOffset !== this.headroom)
      return undefined;
    return Buffer.from(buffer.buffer, 0, this.headroom + this.size);
  }

  /** Whether `buffer` is (a view of) a buffer lent by this pool and not given back yet. */
  lends(buffer: Buffer): boolean {
    return this.lent.has(buffer.buffer);
  }

  /** Buffers lent and not given back. */
  get inUse(): number {
    return this.lent.size;
  }

  /** Buffers kept for reuse. */
  get idle(): number {
    return this.free.length;
  }
}
