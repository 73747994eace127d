import { createHmac, hkdfSync, randomBytes, scrypt, timingSafeEqual, type BinaryLike } from 'node:crypto';
import type { CipherName } from './ciphers/chunk-cipher';
import { aes256GcmCipher } from './ciphers/aead.cipher';
import type { RepositoryConfig, RepositoryEncryption, ScryptParameters } from './format/repository.config';
import { RepositoryError } from './repository.errors';
import { SerialQueue } from './serial.queue';

/** The secret an operator gives: a passphrase (string) or raw secret bytes; both go through scrypt. */
export type RepositorySecret = string | Buffer;

/** Keys derived from the master key, each for one purpose, so no key is used twice. */
export interface RepositoryKeys {
  /** HMAC-SHA256 key naming chunks (ids leak nothing about content). */
  chunkId: Buffer;
  /** Seals chunk payloads. */
  chunkSeal: Buffer;
  /** Seals indexes and manifests. */
  metadataSeal: Buffer;
}

export const DEFAULT_SCRYPT: Omit<ScryptParameters, 'salt'> = { name: 'scrypt', N: 2 ** 15, r: 8, p: 1 };

/**
 * The process's scrypt derivations, one at a time. Each holds 128·N·r bytes (32 MiB at the
 * defaults) for its ~0.1-0.3 s. Tasks that start together on one worker all derive at once (on a
 * new repository, each tries to create it, and the losers then open it): a transfer worker's RSS
 * jumped by 64 MiB at the start of a job, on top of what its previous job left in malloc's free
 * lists, which set its peak. One at a time, a task waits at most a few tenths of a second more
 * (docs/benchmarks/jobs.md, "Worker memory: one scrypt at a time").
 */
export const keyDerivations = new SerialQueue();

function scryptAsync(
  secret: BinaryLike,
  salt: Buffer,
  params: Omit<ScryptParameters, 'salt'>,
): Promise<Buffer> {
  return keyDerivations.run(
    () =>
      new Promise((resolve, reject) => {
        scrypt(
          secret,
          salt,
          32,
          { N: params.N, r: params.r, p: params.p, maxmem: 256 * params.N * params.r + 16 * 1024 * 1024 },
          (error, key) => (error ? reject(error) : resolve(key)),
        );
      }),
  );
}

function keyCheckOf(
  masterKey: Buffer,
  config: Pick<RepositoryConfig, 'repositoryId' | 'blockSize' | 'chunkId'>,
  cipher: CipherName,
): Buffer {
  return createHmac('sha256', masterKey)
    .update(
      `haven-repository key check v1|${config.repositoryId}|${config.blockSize}|${config.chunkId}|${cipher}`,
    )
    .digest();
}

function wrapAssociatedData(repositoryId: string): Buffer {
  return Buffer.from(`haven-repository master key|${repositoryId}`);
}

export function deriveRepositoryKeys(masterKey: Buffer, repositoryId: string): RepositoryKeys {
  const derive = (purpose: string): Buffer =>
    Buffer.from(hkdfSync('sha256', masterKey, Buffer.from(repositoryId), `haven-repository ${purpose}`, 32));
  return {
    chunkId: derive('chunk id'),
    chunkSeal: derive('chunk seal'),
    metadataSeal: derive('metadata seal'),
  };
}

/**
 * A key for data Haven keeps beside the repository's own objects (full-backup archives), one per
 * purpose. The `external` label keeps these keys apart from the repository's own.
 */
export function deriveExternalKey(masterKey: Buffer, repositoryId: string, purpose: string): Buffer {
  return Buffer.from(
    hkdfSync('sha256', masterKey, Buffer.from(repositoryId), `haven-repository external|${purpose}`, 32),
  );
}

/** Creates the encryption block of a new repository: a random master key wrapped under the secret. */
export async function createEncryption(
  secret: RepositorySecret,
  config: Pick<RepositoryConfig, 'repositoryId' | 'blockSize' | 'chunkId'>,
  cipher: CipherName,
  kdf: Partial<Omit<ScryptParameters, 'salt' | 'name'>> = {},
): Promise<{ encryption: RepositoryEncryption; masterKey: Buffer }> {
  assertSecret(secret);
  const params = { ...DEFAULT_SCRYPT, ...kdf, name: 'scrypt' as const };
  if (!Number.isInteger(Math.log2(params.N)) || params.N < 2 ** 10) {
    throw new RepositoryError(
      'INVALID_ARGUMENT',
      `scrypt N=${params.N} must be a power of two of at least 1024`,
    );
  }
  const salt = randomBytes(16);
  const wrappingKey = await scryptAsync(secret, salt, params);
  const masterKey = randomBytes(32);
  const wrapped = aes256GcmCipher.seal(wrappingKey, masterKey, wrapAssociatedData(config.repositoryId));
  return {
    masterKey,
    encryption: {
      cipher,
      kdf: { ...params, salt: salt.toString('base64') },
      wrappedKey: wrapped.toString('base64'),
      keyCheck: keyCheckOf(masterKey, config, cipher).toString('base64'),
    },
  };
}

/** Recovers the master key; a wrong secret (or an altered repository.json) is WRONG_KEY. */
export async function unwrapMasterKey(
  remote: string,
  secret: RepositorySecret,
  config: RepositoryConfig,
): Promise<Buffer> {
  assertSecret(secret);
  const encryption = config.encryption;
  if (encryption === null) throw new Error('unwrapMasterKey on an unencrypted repository');
  const wrongKey = (): RepositoryError =>
    new RepositoryError(
      'WRONG_KEY',
      `the key does not open the repository on remote ${remote} (key check failed: wrong passphrase, or ` +
        'repository.json was altered); nothing was written. Use the passphrase the repository was created with',
      { remote, key: 'repository.json' },
    );
  const wrappingKey = await scryptAsync(secret, Buffer.from(encryption.kdf.salt, 'base64'), encryption.kdf);
  let masterKey: Buffer;
  try {
    masterKey = aes256GcmCipher.open(
      wrappingKey,
      Buffer.from(encryption.wrappedKey, 'base64'),
      wrapAssociatedData(config.repositoryId),
    );
  } catch {
    throw wrongKey();
  }
  const expected = Buffer.from(encryption.keyCheck, 'base64');
  const actual = keyCheckOf(masterKey, config, encryption.cipher);
  if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) throw wrongKey();
  return masterKey;
}

/** Re-wraps the same master key under a new secret (chunks are not rewritten). */
export async function rewrapMasterKey(
  masterKey: Buffer,
  secret: RepositorySecret,
  config: RepositoryConfig,
): Promise<RepositoryEncryption> {
  const encryption = config.encryption;
  if (encryption === null) throw new Error('rewrapMasterKey on an unencrypted repository');
  assertSecret(secret);
  const salt = randomBytes(16);
  const wrappingKey = await scryptAsync(secret, salt, encryption.kdf);
  return {
    ...encryption,
    kdf: { ...encryption.kdf, salt: salt.toString('base64') },
    wrappedKey: aes256GcmCipher
      .seal(wrappingKey, masterKey, wrapAssociatedData(config.repositoryId))
      .toString('base64'),
  };
}

function assertSecret(secret: RepositorySecret): void {
  if (secret.length === 0) {
    throw new RepositoryError(
      'INVALID_ARGUMENT',
      'the repository key is empty; give a passphrase or secret bytes',
    );
  }
}
