import { createHmac, hash } from 'node:crypto';
import { blake3, Blake3Hasher } from '@napi-rs/blake-hash';
import { RepositoryError } from '../repository.errors';

/**
 * How a repository names its chunks (repository.json `chunkId`): a hash of the block's bytes,
 * keyed with the repository's chunk-id key when the repository is encrypted, so that ids reveal
 * nothing about the content to whoever holds the storage.
 */
export type ChunkIdAlgorithm = 'sha256' | 'hmac-sha256' | 'blake3' | 'keyed-blake3';

/** The hash family chosen when a repository is created; encryption decides keyed or not. */
export type ChunkIdHash = 'sha256' | 'blake3';

/**
 * New repositories name chunks with BLAKE3: about 3.5 times less CPU per byte than SHA-256 with
 * SHA-NI on the machines measured (docs/benchmarks/jobs.md), and a chunk id is computed for every
 * block backed up and checked again for every block restored or verified.
 */
export const DEFAULT_CHUNK_ID_HASH: ChunkIdHash = 'blake3';

const ALGORITHMS: Readonly<Record<ChunkIdAlgorithm, { hash: ChunkIdHash; keyed: boolean }>> = {
  sha256: { hash: 'sha256', keyed: false },
  'hmac-sha256': { hash: 'sha256', keyed: true },
  blake3: { hash: 'blake3', keyed: false },
  'keyed-blake3': { hash: 'blake3', keyed: true },
};

export function isChunkIdAlgorithm(value: unknown): value is ChunkIdAlgorithm {
  return typeof value === 'string' && Object.hasOwn(ALGORITHMS, value);
}

/** Whether ids under `algorithm` need the repository's chunk-id key (encrypted repositories). */
export function isKeyedChunkId(algorithm: ChunkIdAlgorithm): boolean {
  return ALGORITHMS[algorithm].keyed;
}

/** The algorithm of a new repository: `hash`, keyed when the repository is encrypted. */
export function chunkIdAlgorithmFor(hashName: ChunkIdHash, keyed: boolean): ChunkIdAlgorithm {
  const found = (Object.keys(ALGORITHMS) as ChunkIdAlgorithm[]).find(
    (algorithm) => ALGORITHMS[algorithm].hash === hashName && ALGORITHMS[algorithm].keyed === keyed,
  );
  // The setting may come from outside TypeScript (a job's settings, a script).
  if (found === undefined)
    throw new RepositoryError(
      'INVALID_ARGUMENT',
      `chunk id hash "${hashName}" is unknown; use blake3 or sha256`,
    );
  return found;
}

/** Names blocks: the 32-byte chunk id of a block's bytes. */
export type ChunkNamer = (block: Buffer) => Buffer;

/**
 * The namer of `algorithm`; `key` (32 bytes, the repository's chunk-id key) for a keyed one.
 * Synchronous, on the calling thread: a 2 MiB block takes ~0.45 ms with BLAKE3, ~1.5 ms with
 * SHA-256.
 */
export function chunkNamer(algorithm: ChunkIdAlgorithm, key: Buffer | undefined): ChunkNamer {
  const { keyed } = ALGORITHMS[algorithm];
  if (keyed !== (key !== undefined)) {
    throw new RepositoryError(
      'INVALID_ARGUMENT',
      keyed
        ? `chunk ids "${algorithm}" need the repository's chunk-id key`
        : `chunk ids "${algorithm}" take no key`,
    );
  }
  switch (algorithm) {
    case 'sha256':
      return (block) => hash('sha256', block, 'buffer');
    case 'hmac-sha256':
      return (block) =>
        createHmac('sha256', key as Buffer)
          .update(block)
          .digest();
    case 'blake3':
      return (block) => blake3(block);
    case 'keyed-blake3': {
      // One keyed state, reset per block: the key schedule is not redone for each block.
      const hasher = Blake3Hasher.newKeyed(key as Buffer);
      return (block) => {
        hasher.reset();
        return hasher.update(block).digestBuffer();
      };
    }
  }
}
