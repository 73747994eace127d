import * as legacyZstd from '@mongodb-js/zstd';
import { decompress as referenceDecompress } from 'fzstd';
import { seededBytes } from '../testing/disk-pattern.fixture';
import { zstdCodec } from './zstd.codec';

// Text-like data with some noise: levels 1 and 19 give clearly different sizes.
function textLike(length: number): Buffer {
  const words = Buffer.from('kernel: eth0 link up; INSERT INTO events VALUES (1042, now()); '.repeat(64));
  const noise = seededBytes('zstd-levels', length / 16);
  const out = Buffer.alloc(length);
  for (let at = 0, i = 0; at < length; at += 64, i++) {
    words.copy(out, at, (noise[i % noise.length] ?? 0) * 3, (noise[i % noise.length] ?? 0) * 3 + 64);
    out[at] = noise[(i * 7) % noise.length] ?? 0;
  }
  return out;
}

describe('zstd codec', () => {
  const plaintext = textLike(1024 * 1024);

  it('compresses at the level it is given (not at a fixed default)', async () => {
    const fast = await zstdCodec.compress(plaintext, 1);
    const small = await zstdCodec.compress(plaintext, 19);
    expect(small.length).toBeLessThan(fast.length * 0.95);
    expect((await zstdCodec.decompress(fast, plaintext.length)).equals(plaintext)).toBe(true);
    expect((await zstdCodec.decompress(small, plaintext.length)).equals(plaintext)).toBe(true);
  });

  it('defaults to level 1', async () => {
    expect(
      (await zstdCodec.compress(plaintext, undefined)).equals(await zstdCodec.compress(plaintext, 1)),
    ).toBe(true);
  });

  it('reports a damaged frame as a zstd error', async () => {
    const frame = await zstdCodec.compress(plaintext, 1);
    await expect(zstdCodec.decompress(frame.subarray(0, 100), plaintext.length)).rejects.toThrow(/^zstd: /);
  });
});

describe('zstd codec and frames of other encoders', () => {
  const plaintext = textLike(1024 * 1024);

  it('reads frames @mongodb-js/zstd wrote (repositories written before the reused contexts)', async () => {
    const legacy = await legacyZstd.compress(plaintext, 1);
    expect((await zstdCodec.decompress(legacy, plaintext.length)).equals(plaintext)).toBe(true);
  });

  it('writes frames a reference decoder reads', async () => {
    const frame = await zstdCodec.compress(plaintext, 1);
    expect(Buffer.from(referenceDecompress(frame)).equals(plaintext)).toBe(true);
    expect((await legacyZstd.decompress(frame)).equals(plaintext)).toBe(true);
  });

  it('returns owned buffers: outputs of concurrent calls stay intact', async () => {
    const plaintexts = Array.from({ length: 10 }, (_, i) => seededBytes(`owned-${i}`, 8192).fill(0, 4096));
    const frames = await Promise.all(plaintexts.map((chunk) => zstdCodec.compress(chunk, 1)));
    const decoded = await Promise.all(frames.map((frame) => zstdCodec.decompress(frame, 8192)));
    frames.forEach((frame, i) =>
      expect(Buffer.from(referenceDecompress(frame)).equals(plaintexts[i])).toBe(true),
    );
    decoded.forEach((chunk, i) => expect(chunk.equals(plaintexts[i])).toBe(true));
  });

  it('lends compressWith a reused buffer: payloads copied out earlier stay intact', async () => {
    const chunks = Array.from({ length: 6 }, (_, i) => seededBytes(`lent-${i}`, 65536).fill(i, 16384));
    const kept: Buffer[] = [];
    for (const chunk of chunks)
      kept.push(await zstdCodec.compressWith(chunk, 1, (payload) => Buffer.from(payload)));
    kept.forEach((frame, i) => expect(Buffer.from(referenceDecompress(frame)).equals(chunks[i])).toBe(true));
  });

  it('keeps reusing a chunk-sized output after a larger input (an index), which gets its own', async () => {
    const small = seededBytes('reused-small', 65536);
    const large = seededBytes('reused-large', 24 * 1024 * 1024);
    const memoryOf = (input: Buffer): Promise<ArrayBufferLike> =>
      zstdCodec.compressWith(input, 1, (payload) => payload.buffer);
    const reused = await memoryOf(small);
    const ownOutput = await zstdCodec.compressWith(large, 1, (payload) => ({
      memory: payload.buffer,
      frame: Buffer.from(payload),
    }));
    expect(ownOutput.memory).not.toBe(reused);
    expect(Buffer.from(referenceDecompress(ownOutput.frame)).equals(large)).toBe(true);
    // The chunk-sized output did not grow to the large input's bound: the same memory again.
    expect(await memoryOf(small)).toBe(reused);
    expect(reused.byteLength).toBeLessThan(8 * 1024 * 1024);
  });

  it('refuses a frame that decodes to more than the header announced', async () => {
    const frame = await zstdCodec.compress(plaintext, 1);
    await expect(zstdCodec.decompress(frame, plaintext.length - 1)).rejects.toThrow(/^zstd: /);
    expect((await zstdCodec.decompress(frame, plaintext.length)).equals(plaintext)).toBe(true);
  });
});
