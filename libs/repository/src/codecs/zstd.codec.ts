import type { ChunkCodec } from './chunk-codec';

interface ZstdNapiBinding {
  compressBound(length: number): number;
  CCtx: new () => { compress(dst: Uint8Array, src: Uint8Array, level: number): number };
  DCtx: new () => { decompress(dst: Uint8Array, src: Uint8Array): number };
}

// zstd-napi's low-level binding: ZSTD_compressCCtx / ZSTD_decompressDCtx on contexts kept for the
// process's life. Standard frames: any conforming decoder reads them, and frames that
// @mongodb-js/zstd wrote before 2026-12-07 read the same.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const binding = require('zstd-napi/binding') as ZstdNapiBinding;

// @mongodb-js/zstd's native binding (its index.js drops the level), for the slow levels only.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const oneShot = require('@mongodb-js/zstd/bindings') as {
  compress(data: Buffer, level: number): Promise<Buffer>;
};

const DEFAULT_LEVEL = 1;
/**
 * Levels above this one take tens of ms to seconds per 2 MiB chunk: on this thread they would
 * stall the event loop (leases, heartbeats), so they keep running in libuv's threads, one-shot.
 */
const MAX_LEVEL_ON_THIS_THREAD = 3;

/**
 * One compression context, one decompression context and one output buffer, reused for every
 * chunk: after the first chunk, compressing allocates nothing. The one-shot binding used before
 * made a context and an output buffer per chunk in libuv's threads, and malloc's free lists kept
 * them: a worker's native memory grew job after job. The calls are synchronous, on this thread,
 * so the reuse needs no locking; worker threads with their own contexts cost ~10 MiB each, more
 * than they saved (docs/benchmarks/jobs.md, "zstd with reused contexts").
 */
const compressionContext = new binding.CCtx();
const decompressionContext = new binding.DCtx();
let output = Buffer.alloc(0);
/**
 * The reused output grows to a chunk's bound at most (blocks are 2 MiB; 4 MiB leaves room). A larger
 * input, a disk index (32 MiB for a densely allocated 2 TiB disk), gets an output of its own, freed
 * with it: the reused one grew to it and kept it for the life of the process (docs/benchmarks/jobs.md,
 * "Dense 2 TiB base").
 */
const REUSED_OUTPUT_MAX = binding.compressBound(4 * 1024 * 1024);

function compressInto<T>(plaintext: Buffer, level: number, use: (payload: Buffer) => T): T {
  const bound = binding.compressBound(plaintext.length);
  let target: Buffer;
  if (bound > REUSED_OUTPUT_MAX) target = Buffer.allocUnsafe(bound);
  else {
    // Grows to the largest chunk seen (the repository's block size) and stays.
    if (output.length < bound) output = Buffer.allocUnsafe(bound);
    target = output;
  }
  let length: number;
  try {
    length = compressionContext.compress(target, plaintext, level);
  } catch (error) {
    throw new Error(`zstd: ${(error as Error).message}`);
  }
  return use(target.subarray(0, length));
}

function decompress(payload: Buffer, expectedLength: number): Buffer {
  // Exactly the announced size: a frame that decodes to more is refused, not grown into.
  const plaintext = Buffer.allocUnsafe(expectedLength);
  try {
    return plaintext.subarray(0, decompressionContext.decompress(plaintext, payload));
  } catch (error) {
    throw new Error(`zstd: ${(error as Error).message}`);
  }
}

// Each call starts after the caller's current step, like the asynchronous codecs, and a throw
// becomes a rejection.
async function compressWith<T>(
  plaintext: Buffer,
  level: number | undefined,
  use: (payload: Buffer) => T,
): Promise<T> {
  const effective = level ?? DEFAULT_LEVEL;
  if (effective <= MAX_LEVEL_ON_THIS_THREAD) {
    await Promise.resolve();
    return compressInto(plaintext, effective, use);
  }
  let payload: Buffer;
  try {
    payload = await oneShot.compress(plaintext, effective);
  } catch (error) {
    throw new Error(`zstd: ${(error as Error).message}`);
  }
  return use(payload);
}

export const zstdCodec: ChunkCodec = {
  name: 'zstd',
  id: 1,
  compress: (plaintext, level) => compressWith(plaintext, level, (payload) => Buffer.from(payload)),
  compressWith,
  decompress: (payload, expectedLength) => Promise.resolve().then(() => decompress(payload, expectedLength)),
};
