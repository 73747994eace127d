import { compress, decompress } from '@mongodb-js/zstd';
import type { ChunkCodec } from './chunk-codec';

// @mongodb-js/zstd runs in libuv worker threads, so compression overlaps hashing and encryption.
export const zstdCodec: ChunkCodec = {
  name: 'zstd',
  id: 1,
  compress: (plaintext, level) => compress(plaintext, level ?? 1),
  decompress: (payload) => decompress(payload),
};
