import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/**
 * The thread's whole program: a chunk id (SHA-256, or HMAC-SHA-256 with the repository's key) of
 * a block it reads in place, in memory it shares with the data path (no copy). Source text rather
 * than a file, so that it runs the same from TypeScript, compiled JavaScript and a bundle.
 */
const PROGRAM = `
const { parentPort } = require('node:worker_threads');
const { createHmac, hash } = require('node:crypto');
parentPort.on('message', ({ seq, buffer, offset, length, key }) => {
  try {
    const block = Buffer.from(buffer, offset, length);
    const id = key === undefined ? hash('sha256', block, 'buffer') : createHmac('sha256', key).update(block).digest();
    parentPort.postMessage({ seq, id });
  } catch (error) {
    parentPort.postMessage({ seq, error: String(error && error.message ? error.message : error) });
  }
});
`;

/** HAVEN_CHUNK_ID_THREAD=off keeps chunk ids on the main thread (diagnosis; single-core hosts do). */
export const CHUNK_ID_THREAD_ENV = 'HAVEN_CHUNK_ID_THREAD';

interface Waiting {
  resolve: (id: Buffer) => void;
  reject: (error: Error) => void;
}

/**
 * A worker thread that computes chunk ids of blocks held in shared memory (a `SharedArrayBuffer`,
 * as the export readers' block pools allocate): the data path's main thread, which reads the
 * export and stores chunks, no longer spends its time on SHA-256 (about 40 % of it in a full
 * backup: docs/benchmarks/jobs.md, "session 14"). The block is read in place; only the 32-byte id
 * comes back. Requests are answered in order, one at a time. Started at first use; it does not
 * keep the process alive while nothing waits for it; a thread that dies fails what it was asked
 * and is started again at the next request.
 */
export class ChunkIdThread {
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, Waiting>();
  private nextSeq = 0;

  /** Whether the thread can read `block` in place: its memory is shared. */
  static reads(block: Buffer): boolean {
    return block.buffer instanceof SharedArrayBuffer;
  }

  /** The id of `block` (shared memory: see `reads`), keyed by `key` when given (HMAC-SHA-256). */
  idOf(block: Buffer, key?: Buffer): Promise<Buffer> {
    if (!ChunkIdThread.reads(block))
      return Promise.reject(new RangeError('the chunk id thread reads only blocks in shared memory'));
    const worker = this.started();
    const seq = this.nextSeq++;
    return new Promise<Buffer>((resolve, reject) => {
      this.waiting.set(seq, { resolve, reject });
      if (this.waiting.size === 1) worker.ref();
      worker.postMessage({
        seq,
        buffer: block.buffer,
        offset: block.byteOffset,
        length: block.length,
        ...(key !== undefined ? { key } : {}),
      });
    });
  }

  /** Stops the thread (tests; a process that exits needs not). What waits fails. */
  async stop(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    this.failAll(new Error('the chunk id thread was stopped'));
    await worker?.terminate();
  }

  private started(): Worker {
    if (this.worker !== undefined) return this.worker;
    // Small heaps: the thread only ever holds a message and a 32-byte id at a time.
    const worker = new Worker(PROGRAM, {
      eval: true,
      resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 },
    });
    worker.unref();
    worker.on('message', (message: { seq: number; id?: Uint8Array; error?: string }) => {
      const waiter = this.waiting.get(message.seq);
      if (waiter === undefined) return;
      this.waiting.delete(message.seq);
      if (this.waiting.size === 0) worker.unref();
      if (message.id !== undefined)
        waiter.resolve(Buffer.from(message.id.buffer, message.id.byteOffset, message.id.byteLength));
      else waiter.reject(new Error(`the chunk id thread failed: ${message.error ?? 'no id'}`));
    });
    const died = (error: Error): void => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.failAll(error);
    };
    worker.on('error', (error) => died(new Error(`the chunk id thread failed: ${error.message}`)));
    worker.on('exit', (code) => died(new Error(`the chunk id thread exited (code ${code})`)));
    this.worker = worker;
    return worker;
  }

  private failAll(error: Error): void {
    const waiting = [...this.waiting.values()];
    this.waiting.clear();
    for (const waiter of waiting) waiter.reject(error);
  }
}

let shared: ChunkIdThread | undefined;

/**
 * The process's chunk id thread, or undefined where it would not help: one core (the thread would
 * only take turns with the main thread), or HAVEN_CHUNK_ID_THREAD=off.
 */
export function chunkIdThread(env: NodeJS.ProcessEnv = process.env): ChunkIdThread | undefined {
  const setting = env[CHUNK_ID_THREAD_ENV];
  if (setting !== undefined && setting !== '' && setting !== 'on' && setting !== 'off')
    throw new RangeError(`${CHUNK_ID_THREAD_ENV} must be "on" or "off", not "${setting}"`);
  if (setting === 'off' || (setting !== 'on' && availableParallelism() < 2)) return undefined;
  shared ??= new ChunkIdThread();
  return shared;
}
