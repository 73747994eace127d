import { createCipheriv, createHash } from 'node:crypto';
import { Readable } from 'node:stream';

/**
 * Deterministic pseudo-random content of any size, addressable at any offset (AES-256-CTR key
 * stream), so tests can check a 64 MiB object, or any range of it, without keeping it in memory.
 */
export class TestPattern {
  private readonly key: Buffer;

  constructor(seed: string) {
    this.key = createHash('sha256').update(seed).digest();
  }

  /** The pattern's bytes [offset, offset + length). */
  bytes(offset: number, length: number): Buffer {
    const block = Math.floor(offset / 16);
    const iv = Buffer.alloc(16);
    iv.writeBigUInt64BE(BigInt(block), 8);
    const cipher = createCipheriv('aes-256-ctr', this.key, iv);
    const skip = offset - block * 16;
    return cipher.update(Buffer.alloc(skip + length)).subarray(skip);
  }

  /** SHA-256 (hex) of the first `size` bytes. */
  sha256(size: number, chunkBytes = 1024 * 1024): string {
    const hash = createHash('sha256');
    for (let offset = 0; offset < size; offset += chunkBytes)
      hash.update(this.bytes(offset, Math.min(chunkBytes, size - offset)));
    return hash.digest('hex');
  }

  /**
   * The first `size` bytes as a stream that respects back-pressure. `failAfter`: the stream errors
   * once that many bytes were read (a writer dying mid-way). `onBytes`: progress callback.
   */
  stream(
    size: number,
    options: { chunkBytes?: number; failAfter?: number; onBytes?: (sent: number) => void } = {},
  ): Readable {
    const chunkBytes = options.chunkBytes ?? 256 * 1024;
    let offset = 0;
    const readable: Readable = new Readable({
      highWaterMark: chunkBytes,
      read: () => {
        if (options.failAfter !== undefined && offset >= options.failAfter) {
          readable.destroy(new Error(`test body failed on purpose after ${offset} bytes`));
          return;
        }
        if (offset >= size) {
          readable.push(null);
          return;
        }
        const length = Math.min(chunkBytes, size - offset);
        const chunk = this.bytes(offset, length);
        offset += length;
        options.onBytes?.(offset);
        readable.push(chunk);
      },
    });
    return readable;
  }
}

/** SHA-256 (hex) and length of everything a stream yields. */
export async function digestStream(stream: Readable): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    const buffer = chunk as Buffer;
    hash.update(buffer);
    size += buffer.length;
  }
  return { sha256: hash.digest('hex'), size };
}
