import { randomBytes } from 'node:crypto';
import { seededBytes } from '../testing/disk-pattern.fixture';
import { aes256GcmCipher, chacha20Poly1305Cipher } from './aead.cipher';

const key = randomBytes(32);
const ad = Buffer.from('associated');

describe.each([aes256GcmCipher, chacha20Poly1305Cipher])('$name', (cipher) => {
  // Around the 64 KiB pieces the plaintext is encrypted in, and a whole 2 MiB block.
  const lengths = [0, 1, 65535, 65536, 65537, 3 * 65536 + 17, 2 * 1024 * 1024];

  it.each(lengths)('seals %i bytes into a used buffer at an offset, and opens them again', (length) => {
    const plaintext = seededBytes(`plain-${length}`, length);
    // A buffer full of another chunk's bytes: nothing of them may survive in the sealed object.
    const target = Buffer.alloc(length + 100, 0xa5);
    const written = cipher.sealInto(key, plaintext, ad, target, 20);
    expect(written).toBe(length + cipher.overhead);
    expect(target.subarray(0, 20).equals(Buffer.alloc(20, 0xa5))).toBe(true);
    const sealed = target.subarray(20, 20 + written);
    expect(cipher.open(key, sealed, ad).equals(plaintext)).toBe(true);
    // Same bytes as the allocating form (apart from the random nonce): it opens the other's output.
    const prefixed = cipher.seal(key, plaintext, ad, Buffer.from('HEAD'));
    expect(prefixed.subarray(0, 4).toString()).toBe('HEAD');
    expect(prefixed.length).toBe(4 + written);
    expect(cipher.open(key, prefixed.subarray(4), ad).equals(plaintext)).toBe(true);
  });

  it.each(lengths)(
    'opens %i sealed bytes in place: the plaintext is a view of the sealed buffer',
    (length) => {
      const plaintext = seededBytes(`in-place-${length}`, length);
      const sealed = cipher.seal(key, plaintext, ad);
      const opened = cipher.openInPlace(key, sealed, ad);
      expect(opened.equals(plaintext)).toBe(true);
      expect(opened.buffer).toBe(sealed.buffer);
      expect(opened.byteOffset).toBe(sealed.byteOffset + 12);
    },
  );

  it('refuses in place what does not authenticate: altered bytes, other associated data', () => {
    const plaintext = seededBytes('in-place-altered', 200_000);
    const altered = cipher.seal(key, plaintext, ad);
    altered.writeUInt8(altered.readUInt8(150_000) ^ 1, 150_000);
    expect(() => cipher.openInPlace(key, altered, ad)).toThrow();
    expect(() => cipher.openInPlace(key, cipher.seal(key, plaintext, ad), Buffer.from('other'))).toThrow();
    expect(() => cipher.openInPlace(key, Buffer.alloc(27), ad)).toThrow(/shorter than nonce and tag/);
  });

  it('uses a fresh nonce for every seal into the same buffer', () => {
    const target = Buffer.alloc(1024);
    const plaintext = Buffer.from('same plaintext');
    cipher.sealInto(key, plaintext, ad, target, 0);
    const first = Buffer.from(target.subarray(0, plaintext.length + cipher.overhead));
    cipher.sealInto(key, plaintext, ad, target, 0);
    expect(target.subarray(0, 12).equals(first.subarray(0, 12))).toBe(false);
  });

  it('refuses a target too small for the sealed bytes, naming the sizes', () => {
    const plaintext = Buffer.alloc(100);
    expect(() => cipher.sealInto(key, plaintext, ad, Buffer.alloc(127), 0)).toThrow(
      /sealing 100 bytes needs 128 bytes at offset 0; the target has 127/,
    );
    expect(() => cipher.sealInto(key, plaintext, ad, Buffer.alloc(200), 80)).toThrow(RangeError);
  });

  it('does not open bytes altered after sealing into a buffer', () => {
    const plaintext = seededBytes('altered', 70_000);
    const target = Buffer.alloc(plaintext.length + cipher.overhead);
    cipher.sealInto(key, plaintext, ad, target, 0);
    target.writeUInt8(target.readUInt8(30_000) ^ 1, 30_000);
    expect(() => cipher.open(key, target, ad)).toThrow();
  });
});
