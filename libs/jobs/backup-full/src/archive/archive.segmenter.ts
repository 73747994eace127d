import type { BufferPool } from '@haven/repository';
import { sha256Hex } from './archive.store';

export interface PlainSegment {
  index: number;
  data: Buffer;
  /** SHA-256 of `data`, hex. */
  sha256: string;
  /**
   * Set when the segment was cut into a pooled buffer: gives it back for a later segment. Call it
   * once nothing reads `data` any more (BlockFanout calls it when every remote has released it).
   */
  release?: () => void;
}

/**
 * Cuts a stream into segments of `size` bytes (the last one shorter), each hashed once. Each piece
 * is copied once into its segment's buffer, so the stream's own pieces are released at once.
 *
 * With `buffers` (a pool of `size`-byte buffers), segments are cut into buffers lent by the pool and
 * carry a `release`: a backup reuses the same few buffers instead of allocating one per segment,
 * which the garbage collector would free only at its next full collection (tens of MiB of RSS).
 */
export async function* cutSegments(
  source: AsyncIterable<Buffer | Uint8Array | string>,
  size: number,
  buffers?: BufferPool,
): AsyncGenerator<PlainSegment, void, undefined> {
  if (buffers !== undefined && buffers.size !== size)
    throw new RangeError(
      `segments of ${size} bytes cannot be cut into a pool of ${buffers.size}-byte buffers`,
    );
  const take = (): Buffer => buffers?.acquire() ?? Buffer.allocUnsafe(size);
  let index = 0;
  // The buffer being filled; undefined once handed out (its holder releases it).
  let segment: Buffer | undefined;
  let filled = 0;
  const cut = (data: Buffer): PlainSegment => {
    const whole = segment;
    segment = undefined;
    const plain: PlainSegment = { index: index++, data, sha256: sha256Hex(data) };
    if (buffers !== undefined && whole !== undefined) {
      let released = false;
      plain.release = () => {
        if (released) return;
        released = true;
        buffers.release(whole);
      };
    }
    return plain;
  };
  try {
    for await (const piece of source) {
      let data =
        typeof piece === 'string'
          ? Buffer.from(piece)
          : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
      while (data.length > 0) {
        segment ??= take();
        const length = Math.min(size - filled, data.length);
        data.copy(segment, filled, 0, length);
        filled += length;
        data = data.subarray(length);
        if (filled === size) {
          yield cut(segment);
          filled = 0;
        }
      }
    }
    if (filled > 0 && segment !== undefined) yield cut(segment.subarray(0, filled));
  } finally {
    // A buffer being filled when the stream ended, failed or was abandoned goes back unused.
    if (segment !== undefined) buffers?.release(segment);
  }
}
