/** A per-chunk compression: one driver per codec, chosen through `chunkCodec(name)`. */
export type CodecName = 'none' | 'zstd' | 'gzip';

export interface ChunkCodec {
  readonly name: CodecName;
  /** The byte stored in every object header; never reuse a retired value. */
  readonly id: number;
  compress(plaintext: Buffer, level: number | undefined): Promise<Buffer>;
  decompress(payload: Buffer, expectedLength: number): Promise<Buffer>;
}

export interface CompressionSetting {
  codec: CodecName;
  /** zstd 1..19 (default 1), gzip 1..9 (default 6); ignored for none. */
  level?: number;
}
