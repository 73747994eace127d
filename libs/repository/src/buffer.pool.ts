/**
 * Reusable buffers of one size, at most `capacity` of them kept. Ingest seals each 2 MiB chunk
 * into one of these instead of a fresh allocation: fresh 2 MiB buffers cost page faults, V8
 * full collections (external memory pressure) and, with glibc, freed areas kept per thread.
 *
 * Buffers are lent, not owned: whoever acquires one gives it back with `release` once nothing
 * reads it any more, and must not keep references to it after that.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  private lent = 0;

  constructor(
    readonly size: number,
    readonly capacity: number,
  ) {
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw new RangeError(`buffer pool size must be a positive integer, got ${size}`);
    }
    if (!Number.isSafeInteger(capacity) || capacity <= 0) {
      throw new RangeError(`buffer pool capacity must be a positive integer, got ${capacity}`);
    }
  }

  /** A buffer of `size` bytes with unspecified content (a reused one, or a new one). */
  acquire(): Buffer {
    this.lent++;
    // allocUnsafeSlow: never a slice of Node's shared pool, so the whole ArrayBuffer is ours.
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /** Takes back a buffer from `acquire` (or a view of its start); beyond capacity it is dropped. */
  release(buffer: Buffer): void {
    const whole = Buffer.from(buffer.buffer, 0, buffer.buffer.byteLength);
    if (buffer.byteOffset !== 0 || whole.length !== this.size) {
      throw new RangeError(
        `buffer of ${buffer.buffer.byteLength} bytes at offset ${buffer.byteOffset} was not lent by this ` +
          `pool of ${this.size}-byte buffers`,
      );
    }
    if (this.free.some((kept) => kept.buffer === buffer.buffer)) {
      throw new RangeError('buffer released twice to the pool');
    }
    this.lent = Math.max(0, this.lent - 1);
    if (this.free.length < this.capacity) this.free.push(whole);
  }

  /** Buffers currently lent out (for tests and diagnostics). */
  get inUse(): number {
    return this.lent;
  }

  /** Buffers kept for reuse. */
  get idle(): number {
    return this.free.length;
  }
}
