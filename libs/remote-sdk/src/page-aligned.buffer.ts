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
 * The view a direct write of `body` takes: `body` followed by padding up to the next multiple of
 * DIRECT_IO_ALIGNMENT, or undefined when `body` is not at an aligned place of page-aligned memory. The padding is zeroed here: a driver that writes this view and then
 * truncates the file to `body.length` stores exactly `body`, and never bytes left in the memory
 * by an earlier use. Whoever lent `body` must not use the bytes after it meanwhile.
 */
export function directWriteView(body: Buffer): Buffer | undefined {
  if (body.length === 0 || !aligned.has(body.buffer)) return undefined;
  if (body.byteOffset % DIRECT_IO_ALIGNMENT !== 0) return undefined;
  // Whole pages: the padding of an aligned body always fits in its memory.
  const padded = Math.ceil(body.length / DIRECT_IO_ALIGNMENT) * DIRECT_IO_ALIGNMENT;
  const view = Buffer.from(body.buffer, body.byteOffset, padded);
  view.fill(0, body.length);
  return view;
}
