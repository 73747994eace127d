import type { ChunkCodec } from './chunk-codec';

export const noneCodec: ChunkCodec = {
  name: 'none',
  id: 0,
  compress: (plaintext) => Promise.resolve(plaintext),
  compressWith: (plaintext, _level, use) => Promise.resolve(use(plaintext)),
  decompress: (payload) => Promise.resolve(payload),
};
