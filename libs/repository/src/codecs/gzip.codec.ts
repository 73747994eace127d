import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import type { ChunkCodec } from './chunk-codec';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

export const gzipCodec: ChunkCodec = {
  name: 'gzip',
  id: 2,
  compress: (plaintext, level) => gzipAsync(plaintext, { level: level ?? 6 }),
  compressWith: async (plaintext, level, use) => use(await gzipAsync(plaintext, { level: level ?? 6 })),
  // maxOutputLength bounds a hostile or damaged object to the size the header announced.
  decompress: (payload, expectedLength) =>
    gunzipAsync(payload, { maxOutputLength: Math.max(1, expectedLength) }),
};
