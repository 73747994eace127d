import { randomBytes } from 'node:crypto';
import { aes256GcmCipher, chacha20Poly1305Cipher } from '../ciphers/aead.cipher';
import type { CodecName } from '../codecs/chunk-codec';
import { seededBytes } from '../testing/disk-pattern.fixture';
import {
  EnvelopeError,
  ENVELOPE_HEADER_LENGTH,
  openObject,
  sealObject,
  uncompressedObjectBody,
} from './object.envelope';

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

  for (const cipher of [undefined, aes256GcmCipher, chacha20Poly1305Cipher]) {
    it(`streams what sealObject seals uncompressed, piece by piece and again for a retry, with ${cipher?.name ?? 'no encryption'}`, async () => {
      // Pieces of uneven sizes, none the whole.
      const plaintext = seededBytes('random', 300_000);
      const pieces = function* (): Generator<Buffer> {
        for (let start = 0; start < plaintext.length; start += 70_001)
          yield plaintext.subarray(start, start + 70_001);
      };
      const options = {
        kind: 'index' as const,
        ...(cipher ? { cipher: { cipher, key } } : {}),
        associatedData: ad,
        digest: true,
      };
      const body = uncompressedObjectBody(options, plaintext.length, pieces);
      const copied = await sealObject({ ...options, plaintext, codec: 'none' });
      const read = async (): Promise<Buffer[]> => {
        const parts: Buffer[] = [];
        for await (const part of body.open()) parts.push(part as Buffer);
        return parts;
      };
      const parts = await read();
      const object = Buffer.concat(parts);
      expect(Math.max(...parts.map((part) => part.length))).toBeLessThan(plaintext.length / 2);
      expect(object.length).toBe(body.size);
      expect(object.length).toBe(copied.length);
      // The same object but for the random nonce.
      expect(
        object.subarray(0, ENVELOPE_HEADER_LENGTH).equals(copied.subarray(0, ENVELOPE_HEADER_LENGTH)),
      ).toBe(true);
      if (cipher === undefined) expect(object.equals(copied)).toBe(true);
      const open = (bytes: Buffer, inPlace: boolean) =>
        openObject({
          kind: 'index',
          object: bytes,
          associatedData: ad,
          key,
          requireEncryption: cipher !== undefined,
          inPlace,
        });
      expect((await open(object, false)).plaintext.equals(plaintext)).toBe(true);
      // Again from the start (a retry).
      const again = Buffer.concat(await read());
      const opened = await open(again, true);
      expect(opened.plaintext.equals(plaintext)).toBe(true);
      // Decrypted in place: a view of the object, no copy of its size.
      expect(opened.plaintext.buffer).toBe(again.buffer);
      const altered = Buffer.from(object);
      altered[altered.length - 40] ^= 1;
      await expect(open(altered, true)).rejects.toThrow(
        cipher ? 'authentication failed' : 'SHA-256 of the content does not match',
      );
      const short = uncompressedObjectBody(options, plaintext.length + 1, pieces);
      await expect(async () => {
        for await (const part of short.open()) expect(part).toBeInstanceOf(Buffer);
      }).rejects.toThrow(`the pieces hold ${plaintext.length} bytes, ${plaintext.length + 1} were announced`);
    });
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
