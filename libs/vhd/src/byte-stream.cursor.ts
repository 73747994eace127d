/**
 * Reads exact byte counts from an async sequence of chunks (a Readable), keeping only the chunks
 * not yet consumed. The producer is pulled on demand, so back-pressure reaches the source.
 */
export class ByteStreamCursor {
  private readonly iterator: AsyncIterator<Buffer | Uint8Array | string>;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private ended = false;
  /** Bytes consumed so far: the absolute offset of the next byte. */
  position = 0;

  constructor(source: AsyncIterable<Buffer | Uint8Array | string>) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  private async fill(length: number): Promise<void> {
    while (this.pendingBytes < length && !this.ended) {
      const next = await this.iterator.next();
      if (next.done === true) {
        this.ended = true;
        break;
      }
      const value = next.value;
      const chunk =
        typeof value === 'string' ? Buffer.from(value) : Buffer.isBuffer(value) ? value : Buffer.from(value);
      if (chunk.length === 0) continue;
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
    }
  }

  /** Up to `length` bytes; fewer only at the end of the stream. */
  async read(length: number): Promise<Buffer> {
    await this.fill(length);
    const take = Math.min(length, this.pendingBytes);
    let result: Buffer;
    const first = this.pending.at(0);
    if (first !== undefined && first.length >= take) {
      // Common case: one chunk covers the request, no copy.
      result = first.subarray(0, take);
      if (first.length === take) this.pending.shift();
      else this.pending[0] = first.subarray(take);
    } else {
      result = Buffer.allocUnsafe(take);
      let copied = 0;
      while (copied < take) {
        const chunk = this.pending.at(0);
        if (chunk === undefined) break;
        const part = Math.min(chunk.length, take - copied);
        chunk.copy(result, copied, 0, part);
        copied += part;
        if (part === chunk.length) this.pending.shift();
        else this.pending[0] = chunk.subarray(part);
      }
    }
    this.pendingBytes -= take;
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
      if (this.pending.length === 0) await this.fill(1);
      const chunk = this.pending.at(0);
      if (chunk === undefined) break;
      const part = Math.min(chunk.length, target.length - copied);
      chunk.copy(target, copied, 0, part);
      copied += part;
      if (part === chunk.length) this.pending.shift();
      else this.pending[0] = chunk.subarray(part);
      this.pendingBytes -= part;
    }
    this.position += copied;
    return copied;
  }

  /** Discards up to `length` bytes without keeping them; returns how many were skipped. */
  async skip(length: number): Promise<number> {
    let skipped = 0;
    while (skipped < length) {
      const part = await this.read(Math.min(length - skipped, 1024 * 1024));
      if (part.length === 0) break;
      skipped += part.length;
    }
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
      await this.iterator.return?.();
    }
  }
}
