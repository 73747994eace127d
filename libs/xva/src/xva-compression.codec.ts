import { createGunzip } from 'node:zlib';
import { Readable } from 'node:stream';
import { compress as zstdCompress, decompress as zstdDecompress } from '@mongodb-js/zstd';
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

function corruptZstd(error: unknown, at: number): XvaFormatError {
  return new XvaFormatError(
    'XVA_COMPRESSION',
    `zstd data is corrupt after ${at} compressed bytes: ${error instanceof Error ? error.message : String(error)}`,
    undefined,
    undefined,
    { cause: error },
  );
}

/** Frames up to this compressed size, decoding to at most NATIVE_MAX_OUTPUT, go to the native decoder. */
const NATIVE_MAX_FRAME = 8 * 1024 * 1024;
const NATIVE_MAX_OUTPUT = 32 * 1024 * 1024;
/** A zstd block never decodes to more than 128 KiB: the bound that makes the output size knowable. */
const ZSTD_MAX_BLOCK_OUTPUT = 128 * 1024;

/** Compressed bytes kept as a list of chunks, readable at any offset, consumed from the front. */
class PendingBytes {
  chunks: Buffer[] = [];
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  byteAt(offset: number): number {
    for (const chunk of this.chunks) {
      if (offset < chunk.length) return chunk[offset] ?? 0;
      offset -= chunk.length;
    }
    return 0;
  }

  take(length: number): Buffer {
    const whole = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.length);
    const taken = whole.subarray(0, length);
    const rest = whole.subarray(length);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.length = rest.length;
    return taken;
  }
}

type FrameScan =
  | { kind: 'frame'; length: number; skippable: boolean }
  | { kind: 'need-more' }
  | { kind: 'too-large' };

/**
 * Finds where the frame starting at offset 0 ends by walking its block headers (no decoding). The
 * frame qualifies for native decoding only if it is small and its output provably bounded.
 */
function scanFrame(pending: PendingBytes, at: number): FrameScan {
  const available = pending.length;
  if (available < 8) return { kind: 'need-more' };
  const u32 = (offset: number): number =>
    (pending.byteAt(offset) |
      (pending.byteAt(offset + 1) << 8) |
      (pending.byteAt(offset + 2) << 16) |
      (pending.byteAt(offset + 3) << 24)) >>>
    0;
  const magic = u32(0);
  if ((magic & 0xfffffff0) === 0x184d2a50) {
    const length = 8 + u32(4);
    return length > NATIVE_MAX_FRAME
      ? { kind: 'too-large' }
      : available < length
        ? { kind: 'need-more' }
        : { kind: 'frame', length, skippable: true };
  }
  if (magic !== 0xfd2fb528) throw corruptZstd(new Error(`bad frame magic 0x${magic.toString(16)}`), at);
  const descriptor = pending.byteAt(4);
  const singleSegment = (descriptor & 0x20) !== 0;
  const checksum = (descriptor & 0x04) !== 0;
  const dictionaryBytes = [0, 1, 2, 4][descriptor & 0x03] ?? 0;
  const contentSizeBytes = [singleSegment ? 1 : 0, 2, 4, 8][descriptor >> 6] ?? 0;
  if (dictionaryBytes > 0) return { kind: 'too-large' };
  let position = 4 + 1 + (singleSegment ? 0 : 1) + contentSizeBytes;
  let blocks = 0;
  for (;;) {
    if (position > NATIVE_MAX_FRAME || blocks * ZSTD_MAX_BLOCK_OUTPUT > NATIVE_MAX_OUTPUT)
      return { kind: 'too-large' };
    if (available < position + 3) return { kind: 'need-more' };
    const header =
      pending.byteAt(position) | (pending.byteAt(position + 1) << 8) | (pending.byteAt(position + 2) << 16);
    const type = (header >> 1) & 3;
    if (type === 3) throw corruptZstd(new Error('reserved block type'), at + position);
    position += 3 + (type === 1 ? 1 : header >>> 3);
    blocks++;
    if ((header & 1) !== 0) {
      position += checksum ? 4 : 0;
      return available < position
        ? { kind: 'need-more' }
        : { kind: 'frame', length: position, skippable: false };
    }
  }
}

/**
 * Streaming zstd decoding (any number of frames), pulled by the consumer. Frames that are small and
 * provably bounded (like the 4 MiB frames our writer emits) go to the fast native decoder; the first
 * frame that is not (the single endless frame of the `zstd` tool, for instance) switches the rest of
 * the stream to fzstd, the streaming decoder.
 */
export async function* zstdDecode(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const iterator = source[Symbol.asyncIterator]();
  const pending = new PendingBytes();
  let consumed = 0;
  let ended = false;
  for (;;) {
    const scan = pending.length === 0 && ended ? undefined : scanFrame(pending, consumed);
    if (scan === undefined) return;
    if (scan.kind === 'too-large') break;
    if (scan.kind === 'need-more') {
      if (ended) throw corruptZstd(new Error('the stream ends inside a frame'), consumed + pending.length);
      const next = await iterator.next();
      if (next.done === true) ended = true;
      else pending.push(next.value);
      continue;
    }
    const frame = pending.take(scan.length);
    if (!scan.skippable) {
      try {
        yield await zstdDecompress(frame);
      } catch (error) {
        throw corruptZstd(error, consumed);
      }
    }
    consumed += scan.length;
  }
  // Streaming fallback from the current frame boundary on.
  let output: Buffer[] = [];
  const decoder = new Decompress((data) => {
    output.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  });
  const feed = function* (chunk: Buffer, final: boolean): Generator<Buffer> {
    for (let offset = 0; offset < chunk.length || (final && offset === 0); offset += ZSTD_INPUT_SLICE) {
      const slice = chunk.subarray(offset, offset + ZSTD_INPUT_SLICE);
      try {
        decoder.push(slice, final && offset + ZSTD_INPUT_SLICE >= chunk.length);
      } catch (error) {
        throw corruptZstd(error, consumed + offset);
      }
      const produced = output;
      output = [];
      yield* produced;
      if (chunk.length === 0) break;
    }
    consumed += chunk.length;
  };
  for (const chunk of pending.chunks) yield* feed(chunk, false);
  for (;;) {
    const next = await iterator.next();
    if (next.done === true) break;
    yield* feed(next.value, false);
  }
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
