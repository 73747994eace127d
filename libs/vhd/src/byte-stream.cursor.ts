import { Readable } from 'node:stream';
import { chunkLenderOf, type ChunkLender } from './lent-chunks';

type Chunk = Buffer | Uint8Array | string;

/** Where the cursor's chunks come from: the next one, or undefined at the end. */
interface ChunkSource {
  /**
   * Hands chunks to `accept` until it answers that it has enough (at least one chunk), then
   * resolves true; false when the source ended first.
   */
  more(accept: (chunk: Chunk) => boolean): Promise<boolean>;
  close(): Promise<void>;
}

/** Any async sequence: one `next()` (a promise) per chunk. */
function iteratorSource(source: AsyncIterable<Chunk>): ChunkSource {
  const iterator = source[Symbol.asyncIterator]();
  return {
    async more(accept) {
      for (;;) {
        const next = await iterator.next();
        if (next.done === true) return false;
        if (accept(next.value)) return true;
      }
    },
    async close() {
      await iterator.return?.();
    },
  };
}

/**
 * A Readable, taken as it emits chunks ('data' events, paused once the cursor has what it asked
 * for): unlike its async iterator, no promise per chunk and no concatenated copy of what it
 * buffered; one promise per request (e.g. a 2 MiB block).
 */
function readableSource(stream: Readable): ChunkSource {
  let accepting: ((chunk: Chunk) => boolean) | undefined;
  let waiter: { resolve: (more: boolean) => void; reject: (error: Error) => void } | undefined;
  let failure: Error | undefined;
  let ended = false;
  stream.pause();
  // Chunks emitted before the first request (a stream resumed by someone else) wait here.
  const early: Chunk[] = [];
  stream.on('data', (chunk: Chunk) => {
    if (accepting === undefined) {
      early.push(chunk);
      stream.pause();
      return;
    }
    if (!accepting(chunk)) return;
    // Enough for this request: the stream waits, paused, until the cursor wants more.
    stream.pause();
    const current = waiter;
    waiter = undefined;
    current?.resolve(true);
  });
  stream.once('end', () => {
    ended = true;
    const current = waiter;
    waiter = undefined;
    current?.resolve(false);
  });
  stream.on('error', (error: Error) => {
    failure = error;
    const current = waiter;
    waiter = undefined;
    current?.reject(error);
  });
  stream.once('close', () => {
    if (ended || failure !== undefined) return;
    failure = new Error('the stream closed before its end');
    const current = waiter;
    waiter = undefined;
    current?.reject(failure);
  });
  return {
    more(accept) {
      if (failure !== undefined) return Promise.reject(failure);
      if (ended) return Promise.resolve(false);
      accepting = accept;
      let enough = false;
      for (const chunk of early.splice(0)) enough = accept(chunk) || enough;
      if (enough) return Promise.resolve(true);
      const answer = new Promise<boolean>((resolve, reject) => {
        waiter = { resolve, reject };
      });
      stream.resume();
      return answer;
    },
    close() {
      if (!ended && !stream.destroyed) stream.destroy();
      return Promise.resolve();
    },
  };
}

/**
 * Reads exact byte counts from an async sequence of chunks (a Readable), keeping only the chunks
 * not yet consumed. The producer is pulled on demand, so back-pressure reaches the source. From a
 * stream whose chunks are lent (lent-chunks.ts), every read is a copy and each chunk is given back
 * once consumed, so its producer can fill that memory again.
 */
export class ByteStreamCursor {
  private readonly source: ChunkSource;
  private readonly lender: ChunkLender | undefined;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private ended = false;
  /** Bytes consumed so far: the absolute offset of the next byte. */
  position = 0;
  /** Bytes the request being filled needs buffered. */
  private wanted = 0;
  private readonly accept = (value: Chunk): boolean => {
    const chunk =
      typeof value === 'string' ? Buffer.from(value) : Buffer.isBuffer(value) ? value : Buffer.from(value);
    if (chunk.length > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
    }
    return this.pendingBytes >= this.wanted;
  };

  constructor(source: AsyncIterable<Chunk> | Readable) {
    this.source = source instanceof Readable ? readableSource(source) : iteratorSource(source);
    this.lender = source instanceof Readable ? chunkLenderOf(source) : undefined;
  }

  private async fill(length: number): Promise<void> {
    this.wanted = length;
    while (this.pendingBytes < length && !this.ended) {
      if (!(await this.source.more(this.accept))) this.ended = true;
    }
  }

  /** Up to `length` bytes; fewer only at the end of the stream. */
  async read(length: number): Promise<Buffer> {
    await this.fill(length);
    const take = Math.min(length, this.pendingBytes);
    let result: Buffer;
    const first = this.pending.at(0);
    if (this.lender === undefined && first !== undefined && first.length >= take) {
      // Common case: one chunk covers the request, no copy.
      result = first.subarray(0, take);
      if (first.length === take) this.pending.shift();
      else this.pending[0] = first.subarray(take);
      this.pendingBytes -= take;
    } else {
      result = Buffer.allocUnsafe(take);
      this.copyPending(result, 0);
    }
    this.position += take;
    return result;
  }

  /**
   * Fills `target` from the stream (copying), without assembling a buffer of its own; returns the
   * bytes copied, fewer than `target.length` only at the end of the stream.
   */
  async readInto(target: Buffer): Promise<number> {
    let copied = 0;
    while (copied < target.length) {
      if (this.pending.length === 0) await this.fill(target.length - copied);
      if (this.pending.length === 0) break;
      copied += this.copyPending(target, copied);
    }
    this.position += copied;
    return copied;
  }

  /** Moves buffered bytes into `target` from `offset` on, as many as both hold; returns how many. */
  private copyPending(target: Buffer, offset: number): number {
    let copied = 0;
    while (offset + copied < target.length) {
      const chunk = this.pending.at(0);
      if (chunk === undefined) break;
      const part = Math.min(chunk.length, target.length - offset - copied);
      chunk.copy(target, offset + copied, 0, part);
      copied += part;
      this.consumeFirst(chunk, part);
    }
    this.pendingBytes -= copied;
    return copied;
  }

  /** `part` bytes of the first pending chunk are read: drops them (gives the chunk back once read). */
  private consumeFirst(chunk: Buffer, part: number): void {
    if (part < chunk.length) {
      this.pending[0] = chunk.subarray(part);
      return;
    }
    this.pending.shift();
    this.lender?.giveBack(chunk);
  }

  /** Discards up to `length` bytes without keeping them; returns how many were skipped. */
  async skip(length: number): Promise<number> {
    let skipped = 0;
    while (skipped < length) {
      if (this.pending.length === 0) await this.fill(Math.min(length - skipped, 1024 * 1024));
      const chunk = this.pending.at(0);
      if (chunk === undefined) break;
      const part = Math.min(chunk.length, length - skipped);
      this.consumeFirst(chunk, part);
      this.pendingBytes -= part;
      skipped += part;
    }
    this.position += skipped;
    return skipped;
  }

  /** True when no byte is left. */
  async atEnd(): Promise<boolean> {
    await this.fill(1);
    return this.pendingBytes === 0;
  }

  /** Stops the source (destroys a Readable) when parsing ends early. */
  async close(): Promise<void> {
    this.pending = [];
    this.pendingBytes = 0;
    if (!this.ended) {
      this.ended = true;
      await this.source.close();
    }
  }
}
