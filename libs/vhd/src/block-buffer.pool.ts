/**
 * Where a reader takes the buffers it fills with block data, and gives them back once every
 * consumer is finished with them (see VhdStreamBlock.release).
 */
export interface BlockBufferSource {
  /** A buffer of the source's size; its content is unspecified. */
  acquire(): Buffer;
  /** Takes back a buffer from `acquire`; nothing may read or write it afterwards. */
  release(buffer: Buffer): void;
}

/**
 * Reusable block buffers of one size: at most `keep` are kept for reuse. Lending is not capped (a
 * consumer that fails may never give its buffers back; those are left to the garbage collector),
 * the pace is set by the consumers' back-pressure. Reusing buffers saves a fresh 2 MiB allocation
 * per block (page faults, V8 full collections under external memory pressure).
 */
export class BlockBufferPool implements BlockBufferSource {
  private readonly free: ArrayBuffer[] = [];
  private readonly lent = new Set<ArrayBufferLike>();
  /** Buffers allocated so far (not reused): tests and diagnostics. */
  allocated = 0;

  constructor(
    readonly size: number,
    readonly keep: number,
  ) {
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw new RangeError(`block buffer size must be a positive integer, got ${size}`);
    }
    if (!Number.isSafeInteger(keep) || keep < 0) {
      throw new RangeError(`block buffers kept must be a non-negative integer, got ${keep}`);
    }
  }

  acquire(): Buffer {
    let whole = this.free.pop();
    if (whole === undefined) {
      // allocUnsafeSlow: never a slice of Node's shared pool, so the whole ArrayBuffer is ours.
      whole = Buffer.allocUnsafeSlow(this.size).buffer;
      this.allocated++;
    }
    this.lent.add(whole);
    return Buffer.from(whole, 0, this.size);
  }

  release(buffer: Buffer): void {
    const whole = buffer.buffer;
    if (!this.lent.delete(whole)) {
      throw new RangeError(
        `a ${buffer.length}-byte buffer was released to a pool of ${this.size}-byte block buffers that did not lend it (or it was released twice)`,
      );
    }
    if (this.free.length < this.keep) this.free.push(whole as ArrayBuffer);
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
