import { randomBytes } from 'node:crypto';
import { aes256GcmCipher, chacha20Poly1305Cipher } from '../ciphers/aead.cipher';
import type { CodecName } from '../codecs/chunk-codec';
import { seededBytes } from '../testing/disk-pattern.fixture';
import { EnvelopeError, ENVELOPE_HEADER_LENGTH, openObject, sealObject } from './object.envelope';

const text = Buffer.from('backup '.repeat(50_000));
const key = randomBytes(32);
const ad = Buffer.from('chunk-id');

describe('object envelope', () => {
  const codecs: CodecName[] = ['none', 'zstd', 'gzip'];
  for (const codec of codecs) {
    for (const cipher of [undefined, aes256GcmCipher, chacha20Poly1305Cipher]) {
      it(`round-trips with ${codec} and ${cipher?.name ?? 'no encryption'}`, async () => {
        const object = await sealObject({
          kind: 'chunk',
          plaintext: text,
          codec,
          ...(cipher ? { cipher: { cipher, key } } : {}),
          associatedData: ad,
          digest: true,
        });
        if (codec !== 'none') expect(object.length).toBeLessThan(text.length / 4);
        const opened = await openObject({
          kind: 'chunk',
          object,
          associatedData: ad,
          key,
          requireEncryption: cipher !== undefined,
        });
        expect(opened.plaintext.equals(text)).toBe(true);
        expect(opened.codec).toBe(codec);
        expect(opened.encrypted).toBe(cipher !== undefined);
      });
    }
  }

  it('stores incompressible data uncompressed', async () => {
    const random = seededBytes('random', 65536);
    const object = await sealObject({
      kind: 'chunk',
      plaintext: random,
      codec: 'zstd',
      associatedData: ad,
      digest: false,
    });
    expect(object.length).toBe(ENVELOPE_HEADER_LENGTH + random.length);
    expect(
      (await openObject({ kind: 'chunk', object, associatedData: ad, requireEncryption: false })).codec,
    ).toBe('none');
  });

  it('detects a flipped byte anywhere in an encrypted object', async () => {
    const object = await sealObject({
      kind: 'index',
      plaintext: text,
      codec: 'zstd',
      cipher: { cipher: aes256GcmCipher, key },
      associatedData: ad,
      digest: true,
    });
    for (const offset of [
      5,
      9,
      ENVELOPE_HEADER_LENGTH + 3,
      Math.floor(object.length / 2),
      object.length - 1,
    ]) {
      const damaged = Buffer.from(object);
      damaged[offset] = (damaged[offset] ?? 0) ^ 0x10;
      await expect(
        openObject({ kind: 'index', object: damaged, associatedData: ad, key, requireEncryption: true }),
      ).rejects.toBeInstanceOf(EnvelopeError);
    }
  });

  it('detects a flipped byte in an unencrypted object with a digest', async () => {
    const object = await sealObject({
      kind: 'manifest',
      plaintext: text,
      codec: 'none',
      associatedData: ad,
      digest: true,
    });
    const damaged = Buffer.from(object);
    damaged[ENVELOPE_HEADER_LENGTH + 100] = 0x01;
    await expect(
      openObject({ kind: 'manifest', object: damaged, associatedData: ad, requireEncryption: false }),
    ).rejects.toThrow(/SHA-256/);
  });

  it('refuses an object sealed for another name, another kind, or planted unencrypted', async () => {
    const object = await sealObject({
      kind: 'chunk',
      plaintext: text,
      codec: 'zstd',
      cipher: { cipher: aes256GcmCipher, key },
      associatedData: ad,
      digest: false,
    });
    await expect(
      openObject({
        kind: 'chunk',
        object,
        associatedData: Buffer.from('other'),
        key,
        requireEncryption: true,
      }),
    ).rejects.toThrow(/authentication failed/);
    await expect(
      openObject({ kind: 'index', object, associatedData: ad, key, requireEncryption: true }),
    ).rejects.toThrow(/bad magic/);
    const plain = await sealObject({
      kind: 'chunk',
      plaintext: text,
      codec: 'zstd',
      associatedData: ad,
      digest: false,
    });
    await expect(
      openObject({ kind: 'chunk', object: plain, associatedData: ad, key, requireEncryption: true }),
    ).rejects.toThrow(/not encrypted/);
    await expect(
      openObject({
        kind: 'chunk',
        object: object.subarray(0, 40),
        associatedData: ad,
        key,
        requireEncryption: true,
      }),
    ).rejects.toThrow(/announces/);
  });
});
