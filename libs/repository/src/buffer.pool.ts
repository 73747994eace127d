import { allocatePageAligned } from '@haven/remote-sdk';

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
  /** Backing stores of the buffers made here: what `release` takes back. */
  private readonly made = new WeakSet<ArrayBufferLike>();
  private lent = 0;

  /**
   * `allocate` makes a new buffer of `size` bytes, which must be the start of its own backing
   * store (default: `Buffer.allocUnsafeSlow`, never a slice of Node's shared pool); it may leave
   * room after those bytes (page-aligned memory does).
   */
  constructor(
    readonly size: number,
    readonly capacity: number,
    private readonly allocate: (size: number) => Buffer = (length) => Buffer.allocUnsafeSlow(length),
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
    const kept = this.free.pop();
    if (kept !== undefined) return kept;
    const made = this.allocate(this.size);
    if (made.length !== this.size || made.byteOffset !== 0) {
      throw new RangeError(`buffer pool allocator made ${made.length} bytes at offset ${made.byteOffset}`);
    }
    this.made.add(made.buffer);
    return made;
  }

  /** Takes back a buffer from `acquire` (or a view of its start); beyond capacity it is dropped. */
  release(buffer: Buffer): void {
    if (buffer.byteOffset !== 0 || !this.made.has(buffer.buffer)) {
      throw new RangeError(
        `buffer of ${buffer.buffer.byteLength} bytes at offset ${buffer.byteOffset} was not lent by this ` +
          `pool of ${this.size}-byte buffers`,
      );
    }
    if (this.free.some((kept) => kept.buffer === buffer.buffer)) {
      throw new RangeError('buffer released twice to the pool');
    }
    this.lent = Math.max(0, this.lent - 1);
    if (this.free.length < this.capacity) this.free.push(Buffer.from(buffer.buffer, 0, this.size));
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

/** Chunk-object buffers kept by the process-wide pools, per size (two disks of four chunks). */
const SHARED_KEPT = 8;
const sharedPools = new Map<number, BufferPool>();

/**
 * The process's pool of page-aligned buffers of `size` bytes, shared by every writer: a file-system
 * remote writes objects sealed into these around the page cache (isPageAligned in
 * @haven/remote-sdk), and sharing them spares each disk new WebAssembly memories.
 */
export function sharedPageAlignedPool(size: number): BufferPool {
  let pool = sharedPools.get(size);
  if (pool === undefined) {
    pool = new BufferPool(size, SHARED_KEPT, allocatePageAligned);
    sharedPools.set(size, pool);
  }
  return pool;
}
