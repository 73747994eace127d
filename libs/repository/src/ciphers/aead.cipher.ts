import { createCipheriv, createDecipheriv, randomBytes, type CipherGCMTypes } from 'node:crypto';
import type { ChunkCipher, CipherName } from './chunk-cipher';

const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;

/** AES-256-GCM and ChaCha20-Poly1305 share the shape: 96-bit random nonce, 128-bit tag. */
function aeadCipher(
  name: CipherName,
  id: number,
  algorithm: CipherGCMTypes | 'chacha20-poly1305',
): ChunkCipher {
  return {
    name,
    id,
    overhead: NONCE_LENGTH + TAG_LENGTH,
    seal(key, plaintext, associatedData, prefix) {
      const nonce = randomBytes(NONCE_LENGTH);
      const cipher = createCipheriv(algorithm as CipherGCMTypes, key, nonce, { authTagLength: TAG_LENGTH });
      cipher.setAAD(associatedData, { plaintextLength: plaintext.length });
      const body = cipher.update(plaintext);
      const final = cipher.final();
      return Buffer.concat(
        prefix !== undefined
          ? [prefix, nonce, body, final, cipher.getAuthTag()]
          : [nonce, body, final, cipher.getAuthTag()],
      );
    },
    open(key, sealed, associatedData) {
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
      const head = decipher.update(body);
      return Buffer.concat([head, decipher.final()]);
    },
  };
}

export const aes256GcmCipher = aeadCipher('aes-256-gcm', 1, 'aes-256-gcm');
export const chacha20Poly1305Cipher = aeadCipher('chacha20-poly1305', 2, 'chacha20-poly1305');
