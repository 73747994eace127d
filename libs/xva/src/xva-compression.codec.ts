import { createGunzip } from 'node:zlib';
import { Readable } from 'node:stream';
import { compress as zstdCompress } from '@mongodb-js/zstd';
import { Decompress } from 'fzstd';
import type { XvaCompression } from './xva.constants';
import { XvaFormatError } from './xva-format.error';

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
/** Each zstd frame we write holds this much tar; concatenated frames form one valid zstd stream. */
export const XVA_ZSTD_FRAME_SIZE = 4 * 1024 * 1024;
/**
 * Compressed input is fed to the decoder in slices this small so one slice cannot expand into an
 * unbounded amount of output (a zstd block decodes to at most 128 KiB).
 */
const ZSTD_INPUT_SLICE = 1024;

export function detectXvaCompression(head: Buffer): XvaCompression {
  if (head.subarray(0, 2).equals(GZIP_MAGIC)) return 'gzip';
  if (head.subarray(0, 4).equals(ZSTD_MAGIC)) return 'zstd';
  return 'none';
}

/**
 * Compresses a byte sequence into independent zstd frames of XVA_ZSTD_FRAME_SIZE input bytes each:
 * the native binding only compresses whole buffers, and a frame per few MiB keeps memory bounded
 * while any zstd decoder (zstd -d, XAPI's import) reads the concatenation as one stream.
 */
export async function* zstdFrames(source: AsyncIterable<Buffer>, level = 3): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of source) {
    pending.push(chunk);
    pendingBytes += chunk.length;
    if (pendingBytes >= XVA_ZSTD_FRAME_SIZE) {
      yield await zstdCompress(Buffer.concat(pending, pendingBytes), level);
      pending = [];
      pendingBytes = 0;
    }
  }
  if (pendingBytes > 0) yield await zstdCompress(Buffer.concat(pending, pendingBytes), level);
}

/** Streaming zstd decoding (any number of frames), pulled by the consumer. */
export async function* zstdDecode(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let output: Buffer[] = [];
  const decoder = new Decompress((data) => {
    output.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  });
  let total = 0;
  const feed = function* (chunk: Buffer, final: boolean): Generator<Buffer> {
    for (let offset = 0; offset < chunk.length || (final && offset === 0); offset += ZSTD_INPUT_SLICE) {
      const slice = chunk.subarray(offset, offset + ZSTD_INPUT_SLICE);
      try {
        decoder.push(slice, final && offset + ZSTD_INPUT_SLICE >= chunk.length);
      } catch (error) {
        throw new XvaFormatError(
          'XVA_COMPRESSION',
          `zstd data is corrupt after ${total + offset} compressed bytes: ${error instanceof Error ? error.message : String(error)}`,
          undefined,
          undefined,
          { cause: error },
        );
      }
      const produced = output;
      output = [];
      yield* produced;
      if (chunk.length === 0) break;
    }
    total += chunk.length;
  };
  for await (const chunk of source) yield* feed(chunk, false);
  yield* feed(Buffer.alloc(0), true);
}

/** Gunzip as a pull-based sequence, with corrupt input reported as XvaFormatError. */
export async function* gzipDecode(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const gunzip = createGunzip();
  const input = Readable.from(source, { objectMode: false });
  input.on('error', (error) => gunzip.destroy(error));
  input.pipe(gunzip);
  try {
    for await (const chunk of gunzip) yield chunk as Buffer;
  } catch (error) {
    if (error instanceof XvaFormatError) throw error;
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('Z_')) {
      throw new XvaFormatError(
        'XVA_COMPRESSION',
        `gzip data is corrupt: ${(error as Error).message}`,
        undefined,
        undefined,
        { cause: error },
      );
    }
    throw error;
  } finally {
    input.destroy();
    gunzip.destroy();
  }
}
