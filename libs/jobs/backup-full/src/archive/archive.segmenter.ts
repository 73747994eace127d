import { sha256Hex } from './archive.store';

export interface PlainSegment {
  index: number;
  data: Buffer;
  /** SHA-256 of `data`, hex. */
  sha256: string;
}

/**
 * Cuts a stream into segments of `size` bytes (the last one shorter), each hashed once. Each piece
 * is copied once into its segment's buffer, so the stream's own pieces are released at once.
 */
export async function* cutSegments(
  source: AsyncIterable<Buffer | Uint8Array | string>,
  size: number,
): AsyncGenerator<PlainSegment, void, undefined> {
  let index = 0;
  let segment = Buffer.allocUnsafe(size);
  let filled = 0;
  const cut = (data: Buffer): PlainSegment => ({ index: index++, data, sha256: sha256Hex(data) });
  for await (const piece of source) {
    let data =
      typeof piece === 'string'
        ? Buffer.from(piece)
        : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    while (data.length > 0) {
      const take = Math.min(size - filled, data.length);
      data.copy(segment, filled, 0, take);
      filled += take;
      data = data.subarray(take);
      if (filled === size) {
        yield cut(segment);
        segment = Buffer.allocUnsafe(size);
        filled = 0;
      }
    }
  }
  if (filled > 0) yield cut(segment.subarray(0, filled));
}
