import { Worker } from 'node:worker_threads';

/**
 * The hashing thread's code (plain JS, evaluated: it runs the same from TypeScript sources and from
 * a compiled build). A request names a slot of the shared memory holding the block and, for an
 * encrypted repository, the chunk-id key; the answer is the id.
 */
const HASHING_THREAD = `
const { parentPort } = require('node:worker_threads');
const { createHash, createHmac } = require('node:crypto');
parentPort.on('message', ({ request, memory, offset, length, key }) => {
  const block = new Uint8Array(memory, offset, length);
  const hash = key === undefined ? createHash('sha256') : createHmac('sha256', key);
  parentPort.postMessage({ request, id: hash.update(block).digest() });
});
`;

interface Pending {
  resolve: (id: Buffer) => void;
  reject: (error: Error) => void;
  slot: number;
}

/**
 * Chunk ids (SHA-256, or HMAC-SHA256 with the repository's chunk-id key) computed on a thread of
 * their own, so that the thread parsing an export does not spend a third of its time hashing
 * (docs/benchmarks/jobs.md, "session 12"). A block is copied into one of a few slots of shared
 * memory (a `memcpy`: a tenth of the hash's cost), hashed there, and the slot reused. Ids come out
 * exactly as ChunkStore.idOf makes them (spec). One per process and block size: see
 * sharedChunkIdHasher.
 */
export class ChunkIdHasher {
  private readonly memory: SharedArrayBuffer;
  private readonly slotsView: Buffer;
  private readonly freeSlots: number[];
  /** Callers waiting for a free slot, first come first served: each is handed the slot freed. */
  private readonly waiting: ((slot: number) => void)[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextRequest = 0;
  private worker: Worker | undefined;

  constructor(
    readonly slotSize: number,
    readonly slots = 4,
  ) {
    this.memory = new SharedArrayBuffer(slotSize * slots);
    this.slotsView = Buffer.from(this.memory);
    this.freeSlots = Array.from({ length: slots }, (_, slot) => slot);
  }

  /**
   * The id of `block` (at most slotSize bytes); `key` makes it an HMAC (encrypted repositories).
   * `block` is read until the promise settles: the caller keeps it unchanged until then.
   */
  idOf(block: Buffer, key?: Buffer): Promise<Buffer> {
    if (block.length > this.slotSize) {
      return Promise.reject(
        new RangeError(`a ${block.length}-byte block does not fit the hasher's ${this.slotSize}-byte slots`),
      );
    }
    const slot = this.freeSlots.pop();
    if (slot !== undefined) return this.hashIn(slot, block, key);
    return new Promise<number>((resolve) => this.waiting.push(resolve)).then((freed) =>
      this.hashIn(freed, block, key),
    );
  }

  private hashIn(slot: number, block: Buffer, key: Buffer | undefined): Promise<Buffer> {
    const offset = slot * this.slotSize;
    // Buffer#fill with a buffer of the same length is one memcpy; Buffer#copy into shared memory
    // takes V8's atomic-safe copy, about 3x slower (docs/benchmarks/jobs.md, session 9).
    if (block.length > 0) this.slotsView.fill(block, offset, offset + block.length);
    const request = this.nextRequest++;
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.set(request, { resolve, reject, slot });
      try {
        const thread = this.thread();
        if (this.pending.size === 1) thread.ref();
        thread.postMessage({ request, memory: this.memory, offset, length: block.length, key });
      } catch (error) {
        this.settle(request);
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }

  /** Stops the thread; requests not answered yet fail. A later idOf starts another. */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker !== undefined) await worker.terminate();
    this.failPending(new Error('the chunk hashing thread was stopped'));
  }

  private thread(): Worker {
    if (this.worker !== undefined) return this.worker;
    const worker = new Worker(HASHING_THREAD, { eval: true });
    worker.on('message', ({ request, id }: { request: number; id: Uint8Array }) => {
      const waiter = this.settle(request);
      waiter?.resolve(Buffer.from(id.buffer, id.byteOffset, id.byteLength));
    });
    const failed = (error: Error): void => {
      if (this.worker === worker) this.worker = undefined;
      this.failPending(new Error(`the chunk hashing thread failed: ${error.message}`, { cause: error }));
    };
    worker.on('error', failed);
    worker.on('exit', (code) => {
      if (this.worker === worker) failed(new Error(`it exited with code ${code}`));
    });
    // Keeps the process alive only while a request is in flight (set after the listeners, which
    // would take the reference again).
    if (this.pending.size === 0) worker.unref();
    this.worker = worker;
    return worker;
  }

  /** Forgets a request and frees its slot (for the next caller waiting, if any). */
  private settle(request: number): Pending | undefined {
    const waiter = this.pending.get(request);
    if (waiter === undefined) return undefined;
    this.pending.delete(request);
    if (this.pending.size === 0) this.worker?.unref();
    const next = this.waiting.shift();
    if (next !== undefined) next(waiter.slot);
    else this.freeSlots.push(waiter.slot);
    return waiter;
  }

  private failPending(error: Error): void {
    for (const request of [...this.pending.keys()]) this.settle(request)?.reject(error);
  }
}

const hashers = new Map<number, ChunkIdHasher>();

/** The process's hasher for blocks of up to `slotSize` bytes (every writer of the process shares it). */
export function sharedChunkIdHasher(slotSize: number): ChunkIdHasher {
  let hasher = hashers.get(slotSize);
  if (hasher === undefined) {
    hasher = new ChunkIdHasher(slotSize);
    hashers.set(slotSize, hasher);
  }
  return hasher;
}
