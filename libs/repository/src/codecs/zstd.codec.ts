import type { ChunkCodec } from './chunk-codec';

interface ZstdBinding {
  compress(data: Buffer, level?: number): Promise<Buffer>;
  decompress(data: Buffer): Promise<Buffer>;
}

// @mongodb-js/zstd 1.2.2's index.js wrapper drops the level argument (every call ran at zstd's
// default level 3, whatever the repository asked for): call the native binding it wraps. It
// runs in libuv worker threads, so compression overlaps hashing and encryption.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const binding = require('@mongodb-js/zstd/bindings') as ZstdBinding;

/** Native errors carry no JS stack: rethrow with one and say where they come from. */
async function withStack(operation: Promise<Buffer>): Promise<Buffer> {
  try {
    return await operation;
  } catch (error) {
    throw new Error(`zstd: ${(error as Error).message}`);
  }
}

export const zstdCodec: ChunkCodec = {
  name: 'zstd',
  id: 1,
  compress: (plaintext, level) => withStack(binding.compress(plaintext, level ?? 1)),
  decompress: (payload) => withStack(binding.decompress(payload)),
};
