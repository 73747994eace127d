import type { ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { BLOCK_SIZE } from '../storage/block.constants';

/**
 * Block buffers of one export, reused once the socket has taken them. A fresh 2 MiB buffer per
 * block made V8 run a full collection every few dozen blocks (external memory pressure): about
 * half the simulator's CPU while it served a large export, on cores the backup under test shares.
 */
export class ExportBlockBuffers {
  private readonly free: Buffer[] = [];
  private readonly mine = new WeakSet<ArrayBufferLike>();
  private made = 0;

  constructor(private readonly kept = 8) {}

  /** Buffers allocated so far (for tests: bounded when the writer hands them back). */
  get allocated(): number {
    return this.made;
  }

  acquire(): Buffer {
    const reused = this.free.pop();
    if (reused !== undefined) return reused;
    this.made++;
    const buffer = Buffer.allocUnsafeSlow(BLOCK_SIZE);
    this.mine.add(buffer.buffer);
    return buffer;
  }

  /**
   * Takes back the buffer a chunk of the export is (a view of) once nothing reads it any more;
   * chunks that are not such buffers (headers, bitmaps, shared zeros) are ignored.
   */
  recycle(chunk: Buffer): void {
    if (!this.mine.has(chunk.buffer) || this.free.length >= this.kept) return;
    const whole = Buffer.from(chunk.buffer, 0, BLOCK_SIZE);
    if (!this.free.some((kept) => kept.buffer === whole.buffer)) this.free.push(whole);
  }
}

/**
 * A Writable that writes each chunk to `response` and calls `written(chunk)` once the socket has
 * taken it (the write's callback): the chunk's memory may then be reused. Back-pressure is the
 * response's own; errors of the response reach the pipeline through its abort signal.
 */
export function responseWriter(response: ServerResponse, written: (chunk: Buffer) => void): Writable {
  return new Writable({
    highWaterMark: 0,
    write(chunk: Buffer, _encoding, callback) {
      const more = response.write(chunk, (error) => {
        if (error === undefined || error === null) written(chunk);
      });
      if (more) callback();
      else response.once('drain', () => callback());
    },
    final(callback) {
      response.end(() => callback());
    },
  });
}
