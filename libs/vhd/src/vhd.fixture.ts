// Generated test disks: deterministic, distinct content per block, so a misplaced block is caught.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { VHD_BLOCK_SIZE } from './vhd.constants';

/** A 2 MiB block whose every 32-byte run depends on the seed, the block index and its position. */
export function patternBlock(seed: string, index: number): Buffer {
  const block = Buffer.allocUnsafe(VHD_BLOCK_SIZE);
  const digest = createHash('sha256').update(`${seed}:${index}`).digest();
  for (let offset = 0; offset < VHD_BLOCK_SIZE; offset += 32) {
    digest.copy(block, offset);
    digest.writeUInt32LE((digest.readUInt32LE(0) ^ offset) >>> 0, 0);
  }
  return block;
}

export async function collect(stream: Readable | AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream)
    chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/** Raw image of `virtualSize` bytes where only `allocated` blocks hold the pattern. */
export function patternRaw(seed: string, virtualSize: number, allocated: readonly number[]): Buffer {
  const raw = Buffer.alloc(virtualSize);
  for (const index of allocated) {
    const start = index * VHD_BLOCK_SIZE;
    patternBlock(seed, index).copy(raw, start, 0, Math.min(VHD_BLOCK_SIZE, virtualSize - start));
  }
  return raw;
}

/** Feeds a buffer to a parser in uneven chunks, as a network stream would. */
export function chunkedStream(buffer: Buffer, chunkSize = 65_531): Readable {
  function* chunks(): Generator<Buffer> {
    for (let offset = 0; offset < buffer.length; offset += chunkSize)
      yield buffer.subarray(offset, offset + chunkSize);
  }
  return Readable.from(chunks(), { objectMode: false });
}

/** Byte equality without Jest's slow element-wise diff of megabyte buffers. */
export function expectBytes(actual: Buffer | undefined, expected: Buffer): void {
  expect(actual?.length).toBe(expected.length);
  if (actual === undefined || actual.equals(expected)) return;
  let at = 0;
  while (actual[at] === expected[at]) at++;
  throw new Error(`buffers differ first at byte ${at} (of ${expected.length})`);
}
