import type { ChunkCodec } from './chunk-codec';

export const noneCodec: ChunkCodec = {
  name: 'none',
  id: 0,
  compress: (plaintext) => Promise.resolve(plaintext),
  decompress: (payload) => Promise.resolve(payload),
};
