/** A per-chunk compression: one driver per codec, chosen through `chunkCodec(name)`. */
export type CodecName = 'none' | 'zstd' | 'gzip';

export interface ChunkCodec {
  readonly name: CodecName;
  /** The byte stored in every object header; never reuse a retired value. */
  readonly id: number;
  /** Resolves to a Buffer the caller owns. */
  compress(plaintext: Buffer, level: number | undefined): Promise<Buffer>;
  /**
   * Compresses and hands the payload to `use`, which runs synchronously before the promise
   * settles: the payload may sit in a buffer reused for the next chunk, so `use` must not keep it.
   */
  compressWith<T>(plaintext: Buffer, level: number | undefined, use: (payload: Buffer) => T): Promise<T>;
  decompress(payload: Buffer, expectedLength: number): Promise<Buffer>;
}

export interface CompressionSetting {
  codec: CodecName;
  /** zstd 1..19 (default 1), gzip 1..9 (default 6); ignored for none. */
  level?: number;
}
