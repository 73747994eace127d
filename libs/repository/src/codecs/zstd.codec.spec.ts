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
