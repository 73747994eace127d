import type { CompressionSetting } from '../codecs/chunk-codec';
import { validateCompression } from '../codecs/codec.registry';
import type { CipherName } from '../ciphers/chunk-cipher';
import { validateCipherName } from '../ciphers/cipher.registry';
import { RepositoryError } from '../repository.errors';
import { type ChunkIdAlgorithm, isChunkIdAlgorithm, isKeyedChunkId } from './chunk-id';

export const REPOSITORY_FORMAT = 'haven-repository';
export const REPOSITORY_FORMAT_VERSION = 1;
/** The VHD block: one chunk per 2 MiB block of a disk. */
export const REPOSITORY_BLOCK_SIZE = 2 * 1024 * 1024;

export interface ScryptParameters {
  name: 'scrypt';
  /** CPU/memory cost, a power of two. */
  N: number;
  r: number;
  p: number;
  /** base64, 16 random bytes. */
  salt: string;
}

export interface RepositoryEncryption {
  cipher: CipherName;
  kdf: ScryptParameters;
  /** base64 nonce | AES-256-GCM(master key) | tag, under the key derived from the passphrase. */
  wrappedKey: string;
  /** base64 HMAC-SHA256 under the master key of the fields below: proves the key and the settings. */
  keyCheck: string;
}

/** repository.json: the only object stored in clear; it never holds a usable key. */
export interface RepositoryConfig {
  format: typeof REPOSITORY_FORMAT;
  version: number;
  repositoryId: string;
  createdAt: string;
  blockSize: number;
  chunkId: ChunkIdAlgorithm;
  compression: CompressionSetting;
  encryption: RepositoryEncryption | null;
}

export function parseRepositoryConfig(remote: string, body: Buffer): RepositoryConfig {
  const damaged = (what: string): RepositoryError =>
    new RepositoryError(
      'CONFIG_DAMAGED',
      `repository.json on remote ${remote} is damaged (${what}); restore it from a copy of the repository`,
      { remote, key: 'repository.json' },
    );
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw damaged('not JSON');
  }
  if (typeof value !== 'object' || value === null) throw damaged('not an object');
  const config = value as Partial<RepositoryConfig>;
  if (config.format !== REPOSITORY_FORMAT) throw damaged(`format is "${String(config.format)}"`);
  if (typeof config.version !== 'number' || config.version > REPOSITORY_FORMAT_VERSION) {
    throw new RepositoryError(
      'UNSUPPORTED_FORMAT',
      `repository on remote ${remote} has format version ${String(config.version)}; this build reads up to ` +
        `${REPOSITORY_FORMAT_VERSION}: upgrade Haven`,
      { remote, key: 'repository.json' },
    );
  }
  if (config.blockSize !== REPOSITORY_BLOCK_SIZE) throw damaged(`block size ${String(config.blockSize)}`);
  if (!isChunkIdAlgorithm(config.chunkId)) throw damaged(`chunk id algorithm "${String(config.chunkId)}"`);
  if (typeof config.repositoryId !== 'string' || typeof config.createdAt !== 'string')
    throw damaged('identity');
  if (typeof config.compression !== 'object') throw damaged('compression');
  try {
    config.compression = validateCompression(config.compression);
  } catch {
    throw damaged('compression');
  }
  const encryption = config.encryption;
  if (encryption !== null) {
    if (typeof encryption !== 'object') throw damaged('encryption');
    try {
      validateCipherName(encryption.cipher);
    } catch {
      throw damaged('cipher');
    }
    const kdf = encryption.kdf as Partial<ScryptParameters> | undefined;
    if (
      kdf?.name !== 'scrypt' ||
      typeof kdf.N !== 'number' ||
      typeof kdf.r !== 'number' ||
      typeof kdf.p !== 'number' ||
      typeof kdf.salt !== 'string' ||
      typeof encryption.wrappedKey !== 'string' ||
      typeof encryption.keyCheck !== 'string'
    ) {
      throw damaged('key parameters');
    }
    if (!isKeyedChunkId(config.chunkId))
      throw damaged(`encrypted repository with unkeyed ids "${config.chunkId}"`);
  } else if (isKeyedChunkId(config.chunkId)) {
    throw damaged('unencrypted repository with keyed ids');
  }
  return config as RepositoryConfig;
}
