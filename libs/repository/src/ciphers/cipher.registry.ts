import { RepositoryError } from '../repository.errors';
import { aes256GcmCipher, chacha20Poly1305Cipher } from './aead.cipher';
import type { ChunkCipher, CipherName } from './chunk-cipher';

export function chunkCipher(name: CipherName): ChunkCipher {
  switch (name) {
    case 'aes-256-gcm':
      return aes256GcmCipher;
    case 'chacha20-poly1305':
      return chacha20Poly1305Cipher;
  }
}

export function chunkCipherById(id: number): ChunkCipher | undefined {
  return [aes256GcmCipher, chacha20Poly1305Cipher].find((cipher) => cipher.id === id);
}

export function validateCipherName(name: string): CipherName {
  if (name === 'aes-256-gcm' || name === 'chacha20-poly1305') return name;
  throw new RepositoryError(
    'INVALID_ARGUMENT',
    `cipher "${name}" is unknown; use aes-256-gcm or chacha20-poly1305`,
  );
}
