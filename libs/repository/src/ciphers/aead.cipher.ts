import {
  createCipheriv,
  createDecipheriv,
  randomBytes,
  randomFillSync,
  type CipherGCMTypes,
} from 'node:crypto';
import type { ChunkCipher, CipherName } from './chunk-cipher';

const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
/**
 * Node's cipher.update always returns a new buffer: encrypting a 2 MiB chunk in pieces of this
 * size and copying each piece into the target keeps every temporary small (reused by malloc,
 * hot in cache) instead of one 2 MiB allocation per chunk.
 */
const PIECE = 64 * 1024;

/** AES-256-GCM and ChaCha20-Poly1305 share the shape: 96-bit random nonce, 128-bit tag. */
function aeadCipher(
  name: CipherName,
  id: number,
  algorithm: CipherGCMTypes | 'chacha20-poly1305',
): ChunkCipher {
  const sealInto = (
    key: Buffer,
    plaintext: Buffer,
    associatedData: Buffer,
    target: Buffer,
    offset: number,
  ): number => {
    const length = NONCE_LENGTH + plaintext.length + TAG_LENGTH;
    if (!Number.isInteger(offset) || offset < 0 || offset + length > target.length) {
      throw new RangeError(
        `sealing ${plaintext.length} bytes needs ${length} bytes at offset ${offset}; the target has ${target.length}`,
      );
    }
    const nonce = target.subarray(offset, offset + NONCE_LENGTH);
    randomFillSync(nonce);
    const cipher = createCipheriv(algorithm as CipherGCMTypes, key, nonce, { authTagLength: TAG_LENGTH });
    cipher.setAAD(associatedData, { plaintextLength: plaintext.length });
    let at = offset + NONCE_LENGTH;
    for (let start = 0; start < plaintext.length; start += PIECE) {
      at += cipher.update(plaintext.subarray(start, start + PIECE)).copy(target, at);
    }
    at += cipher.final().copy(target, at);
    at += cipher.getAuthTag().copy(target, at);
    if (at !== offset + length) throw new Error(`${name} produced ${at - offset} bytes, expected ${length}`);
    return length;
  };
  const decipherOf = (key: Buffer, sealed: Buffer, associatedData: Buffer) => {
    if (sealed.length < NONCE_LENGTH + TAG_LENGTH) {
      throw new Error(`sealed payload of ${sealed.length} bytes is shorter than nonce and tag`);
    }
    const nonce = sealed.subarray(0, NONCE_LENGTH);
    const tag = sealed.subarray(sealed.length - TAG_LENGTH);
    const body = sealed.subarray(NONCE_LENGTH, sealed.length - TAG_LENGTH);
    const decipher = createDecipheriv(algorithm as CipherGCMTypes, key, nonce, {
      authTagLength: TAG_LENGTH,
    });
    decipher.setAAD(associatedData, { plaintextLength: body.length });
    decipher.setAuthTag(tag);
    return { decipher, body };
  };

  return {
    name,
    id,
    overhead: NONCE_LENGTH + TAG_LENGTH,
    sealInto,
    seal(key, plaintext, associatedData, prefix) {
      const start = prefix?.length ?? 0;
      const out = Buffer.allocUnsafe(start + NONCE_LENGTH + plaintext.length + TAG_LENGTH);
      if (prefix !== undefined) prefix.copy(out, 0);
      sealInto(key, plaintext, associatedData, out, start);
      return out;
    },
    *sealPieces(key, associatedData, plaintextLength, pieces) {
      const nonce = randomBytes(NONCE_LENGTH);
      const cipher = createCipheriv(algorithm as CipherGCMTypes, key, nonce, { authTagLength: TAG_LENGTH });
      cipher.setAAD(associatedData, { plaintextLength });
      yield nonce;
      for (const piece of pieces) yield cipher.update(piece);
      const tail = cipher.final();
      if (tail.length > 0) yield tail;
      yield cipher.getAuthTag();
    },
    open(key, sealed, associatedData) {
      const { decipher, body } = decipherOf(key, sealed, associatedData);
      const head = decipher.update(body);
      // final() authenticates; for these stream modes it adds no bytes (no copy in the common case).
      const tail = decipher.final();
      return tail.length === 0 ? head : Buffer.concat([head, tail]);
    },
    openInPlace(key, sealed, associatedData) {
      const { decipher, body } = decipherOf(key, sealed, associatedData);
      // Stream modes: the plaintext so far is never longer than the ciphertext read so far, so each
      // piece's plaintext lands on bytes already decrypted from.
      let at = 0;
      for (let start = 0; start < body.length; start += PIECE) {
        at += decipher.update(body.subarray(start, start + PIECE)).copy(body, at);
      }
      at += decipher.final().copy(body, at);
      if (at !== body.length) throw new Error(`${name} produced ${at} bytes, expected ${body.length}`);
      return body;
    },
  };
}

export const aes256GcmCipher = aeadCipher('aes-256-gcm', 1, 'aes-256-gcm');
export const chacha20Poly1305Cipher = aeadCipher('chacha20-poly1305', 2, 'chacha20-poly1305');
