/**
 * Buffers whose memory starts on a page boundary, so that a file-system driver can write them
 * around the page cache (O_DIRECT), which needs the memory, the file offset and the length aligned
 * (docs/remotes.md, "Direct writes"). Node has no aligned allocator: a WebAssembly memory's bytes
 * start on a page boundary, so that is what these are made of. Where one cannot be made (address
 * space exhausted), an ordinary buffer is returned and drivers write it through the page cache.
 */

/** The alignment direct writes are given: a page, a multiple of every logical sector size. */
export const DIRECT_IO_ALIGNMENT = 4096;
const WASM_PAGE = 64 * 1024;

/** The part of the WebAssembly API used here (this project's TypeScript libs do not declare it). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
const WasmMemory = (
  globalThis as unknown as {
    WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number }) => WasmMemory };
  }
).WebAssembly.Memory;

/** Backing stores known to start on a page boundary (made here). */
const aligned = new WeakSet<ArrayBufferLike>();

/**
 * A buffer of `size` bytes (unspecified content) at the start of page-aligned memory, with room
 * after it up to the next 64 KiB. The memory is fixed (never grown): views of it stay valid.
 */
export function allocatePageAligned(size: number): Buffer {
  if (!Number.isSafeInteger(size) || size <= 0) {
    throw new RangeError(`page-aligned buffer size must be a positive integer, got ${size}`);
  }
  const pages = Math.ceil(size / WASM_PAGE);
  let memory: WasmMemory;
  try {
    memory = new WasmMemory({ initial: pages, maximum: pages });
  } catch {
    // No address space for another memory: an ordinary buffer, written through the page cache.
    return Buffer.allocUnsafeSlow(size);
  }
  aligned.add(memory.buffer);
  return Buffer.from(memory.buffer, 0, size);
}

/**
 * True when `body` starts on a page boundary of page-aligned memory: a driver can then write its
 * whole pages around the page cache (the rest, less than a page, goes through the cache).
 */
export function isPageAligned(body: Buffer): boolean {
  return body.length > 0 && aligned.has(body.buffer) && body.byteOffset % DIRECT_IO_ALIGNMENT === 0;
}
