import { createHash, randomUUID } from 'node:crypto';
import { isRemoteError, type RemoteStore, type ReplayableBody } from '@haven/remote-sdk';
import { ChunkStore } from './chunk.store';
import type { CompressionSetting } from './codecs/chunk-codec';
import { validateCompression } from './codecs/codec.registry';
import type { CipherName } from './ciphers/chunk-cipher';
import { chunkCipher, validateCipherName } from './ciphers/cipher.registry';
import { CHUNK_ID_LENGTH, DiskIndex } from './format/disk-index.codec';
import { type ChunkIdHash, DEFAULT_CHUNK_ID_HASH, chunkIdAlgorithmFor } from './format/chunk-id';
import { EnvelopeError, openObject, sealObject, uncompressedObjectBody } from './format/object.envelope';
import {
  REPOSITORY_BLOCK_SIZE,
  REPOSITORY_FORMAT,
  REPOSITORY_FORMAT_VERSION,
  parseRepositoryConfig,
  type RepositoryConfig,
  type ScryptParameters,
} from './format/repository.config';
import {
  CONFIG_KEY,
  RESTORE_POINTS_PREFIX,
  isRestorePointId,
  manifestKey,
  restorePointIdOfKey,
  restorePointPrefix,
} from './format/repository.layout';
import {
  parseManifest,
  restorePointLabel,
  type RestorePointManifest,
  type RestorePointMeta,
} from './format/restore-point.manifest';
import {
  createEncryption,
  deriveExternalKey,
  deriveRepositoryKeys,
  rewrapMasterKey,
  type RepositoryKeys,
  type RepositorySecret,
} from './repository.keys';
import { RepositoryError } from './repository.errors';
import { processMasterKeys, type MasterKeyCache } from './master-key.cache';
import { RestorePointReader } from './restore-point.reader';
import { processRestorePointOwners, type RestorePointOwners } from './restore-point.owners';
import { RestorePointWriter, type RestorePointWriterOptions } from './restore-point.writer';
import {
  collectGarbage,
  type GarbageCollectionOptions,
  type GarbageCollectionReport,
} from './gc/garbage.collector';
import { verifyRepository, type VerifyOptions, type VerifyReport } from './repository.verifier';
import { repositoryStatistics, type RepositoryStatistics } from './repository.statistics';
import { mapConcurrent } from './concurrency';

/**
 * A disk index whose chunk ids are at least this share of its bytes is stored uncompressed (ids
 * are random: only the bitmap would shrink) and sealed as it is sent.
 */
const UNCOMPRESSED_INDEX_IDS_SHARE = 0.9;

export interface InitRepositoryOptions {
  /** Encrypts the repository when given. Keep it: without it nothing can be restored. */
  key?: RepositorySecret;
  compression?: CompressionSetting;
  cipher?: CipherName;
  /** scrypt cost; the default (N=2^15, r=8, p=1) takes ~0.1 s and 32 MiB. */
  kdf?: Partial<Pick<ScryptParameters, 'N' | 'r' | 'p'>>;
  /**
   * The hash that names chunks (default blake3; keyed with the repository's key when encrypted).
   * Fixed for the repository's life: it is part of every chunk's name.
   */
  chunkIdHash?: ChunkIdHash;
  /** Where the new master key is kept for later opens in this process (default: the process's). */
  keyCache?: MasterKeyCache;
}

export interface OpenRepositoryOptions {
  key?: RepositorySecret;
  /**
   * The id Haven recorded for the repository on this remote: a repository with another id is
   * refused (REPOSITORY_REPLACED) before its key is checked, so restore points of two
   * repositories are never mixed under one remote.
   */
  repositoryId?: string;
  /**
   * Master keys already unwrapped in this process (default: the process's), so scrypt runs once
   * per repository and secret rather than at every open (master-key.cache.ts).
   */
  keyCache?: MasterKeyCache;
}

/** Creates a repository on an empty place of a remote. Fails if one is already there. */
export async function initRepository(
  store: RemoteStore,
  options: InitRepositoryOptions = {},
): Promise<Repository> {
  const compression = validateCompression(options.compression ?? { codec: 'zstd', level: 1 });
  const base = {
    format: REPOSITORY_FORMAT,
    version: REPOSITORY_FORMAT_VERSION,
    repositoryId: randomUUID(),
    createdAt: new Date().toISOString(),
    blockSize: REPOSITORY_BLOCK_SIZE,
    compression,
  } as const;
  const chunkIdHash = options.chunkIdHash ?? DEFAULT_CHUNK_ID_HASH;
  let config: RepositoryConfig;
  let masterKey: Buffer | undefined;
  if (options.key !== undefined) {
    const cipher = validateCipherName(options.cipher ?? 'aes-256-gcm');
    const identity = { ...base, chunkId: chunkIdAlgorithmFor(chunkIdHash, true) };
    const created = await createEncryption(options.key, identity, cipher, options.kdf);
    masterKey = created.masterKey;
    config = { ...identity, encryption: created.encryption };
  } else {
    config = { ...base, chunkId: chunkIdAlgorithmFor(chunkIdHash, false), encryption: null };
  }
  const written = await store.putIfAbsent(CONFIG_KEY, Buffer.from(`${JSON.stringify(config, null, 2)}\n`));
  if (!written) {
    throw new RepositoryError(
      'ALREADY_INITIALIZED',
      `remote ${store.name} already holds a repository (repository.json exists); open it instead`,
      { remote: store.name, key: CONFIG_KEY },
    );
  }
  const keyCache = options.keyCache ?? processMasterKeys;
  if (options.key !== undefined && masterKey !== undefined)
    keyCache.remember(store.name, options.key, config, masterKey);
  return new Repository(store, config, masterKey, keyCache);
}

/**
 * Opens a repository. With encryption, the key is checked here, before anything is written: a
 * wrong key is WRONG_KEY, a missing one KEY_REQUIRED.
 */
export async function openRepository(
  store: RemoteStore,
  options: OpenRepositoryOptions = {},
): Promise<Repository> {
  let body: Buffer;
  try {
    body = await store.getBuffer(CONFIG_KEY);
  } catch (error) {
    if (isRemoteError(error, 'NOT_FOUND')) {
      throw new RepositoryError(
        'NOT_INITIALIZED',
        `remote ${store.name} holds no repository (no repository.json); initialise one first`,
        { remote: store.name, key: CONFIG_KEY },
        { cause: error },
      );
    }
    throw error;
  }
  const config = parseRepositoryConfig(store.name, body);
  if (options.repositoryId !== undefined && config.repositoryId !== options.repositoryId)
    throw new RepositoryError(
      'REPOSITORY_REPLACED',
      `remote ${store.name} holds repository ${config.repositoryId}, not repository ${options.repositoryId} that Haven recorded for it: its storage is not where the backups went (another bucket or prefix, another share or folder with a repository of its own?). Haven does not write there nor read from it; make the remote's own storage available again, or, to use this repository, add its storage as a new remote (and sync it to list its restore points)`,
      { remote: store.name, key: CONFIG_KEY },
    );
  if (config.encryption === null) {
    if (options.key !== undefined) {
      throw new RepositoryError(
        'KEY_NOT_EXPECTED',
        `the repository on remote ${store.name} is not encrypted but a key was given; check the remote is the intended one`,
        { remote: store.name },
      );
    }
    return new Repository(store, config, undefined);
  }
  if (options.key === undefined) {
    throw new RepositoryError(
      'KEY_REQUIRED',
      `the repository on remote ${store.name} is encrypted; give its key`,
      { remote: store.name },
    );
  }
  const keyCache = options.keyCache ?? processMasterKeys;
  return new Repository(store, config, await keyCache.unwrap(store.name, options.key, config), keyCache);
}

/** A summary of a restore point, as listed. */
export interface RestorePointSummary {
  id: string;
  label: string;
  manifest: RestorePointManifest;
}

/** A repository opened on a remote (see docs/repository-format.md). */
export class Repository {
  readonly chunks: ChunkStore;
  private readonly keys: RepositoryKeys | undefined;

  /** @internal use initRepository / openRepository */
  constructor(
    readonly store: RemoteStore,
    private config: RepositoryConfig,
    private readonly masterKey: Buffer | undefined,
    private readonly keyCache: MasterKeyCache = processMasterKeys,
    private readonly owners: RestorePointOwners = processRestorePointOwners,
  ) {
    this.keys = masterKey !== undefined ? deriveRepositoryKeys(masterKey, config.repositoryId) : undefined;
    const cipher = config.encryption !== null ? chunkCipher(config.encryption.cipher) : undefined;
    this.chunks = new ChunkStore(store, config.compression, config.chunkId, this.keys, cipher);
  }

  get id(): string {
    return this.config.repositoryId;
  }

  get encrypted(): boolean {
    return this.config.encryption !== null;
  }

  get blockSize(): number {
    return this.config.blockSize;
  }

  get compression(): CompressionSetting {
    return this.config.compression;
  }

  /** The stored configuration (no secret in it). */
  get settings(): Readonly<RepositoryConfig> {
    return this.config;
  }

  /**
   * A 32-byte key for `purpose` derived from the master key, for data stored beside the repository's
   * own objects (full-backup archives); undefined when the repository is not encrypted.
   */
  externalKey(purpose: string): Buffer | undefined {
    return this.masterKey === undefined
      ? undefined
      : deriveExternalKey(this.masterKey, this.config.repositoryId, purpose);
  }

  /** Starts a restore point: registers a writer session, loads the known-chunk set. */
  async createRestorePointWriter(
    meta: RestorePointMeta,
    options: RestorePointWriterOptions = {},
  ): Promise<RestorePointWriter> {
    return RestorePointWriter.start(this, meta, options);
  }

  async listRestorePoints(
    filter: { vmUuid?: string; tenant?: string; signal?: AbortSignal } = {},
  ): Promise<RestorePointSummary[]> {
    const ids = await this.listRestorePointIds(filter.signal);
    const owners = this.owners.known(this.id, ids);
    // Manifests whose owner is not known yet are read first (and kept for the answer).
    const read = new Map<string, RestorePointManifest>();
    await mapConcurrent(
      ids.filter((id) => !owners.has(id)),
      8,
      async (id) => {
        const manifest = await this.readManifest(id, filter.signal);
        this.owners.remember(this.id, manifest);
        read.set(id, manifest);
      },
    );
    const wanted = ids.filter((id) => {
      const manifest = read.get(id);
      const owner =
        manifest !== undefined ? { vmUuid: manifest.vm.uuid, tenant: manifest.tenant } : owners.get(id);
      return (
        owner !== undefined &&
        (filter.vmUuid === undefined || owner.vmUuid === filter.vmUuid) &&
        (filter.tenant === undefined || owner.tenant === filter.tenant)
      );
    });
    const manifests = await mapConcurrent(
      wanted,
      8,
      async (id) => read.get(id) ?? this.readManifest(id, filter.signal),
    );
    return manifests.map((manifest) => ({ id: manifest.id, label: restorePointLabel(manifest), manifest }));
  }

  /** Ids of committed restore points (a manifest exists), oldest first. */
  async listRestorePointIds(signal?: AbortSignal): Promise<string[]> {
    const ids: string[] = [];
    for await (const object of this.store.listAll(
      RESTORE_POINTS_PREFIX,
      signal !== undefined ? { signal } : {},
    )) {
      const id = restorePointIdOfKey(object.key);
      if (id !== undefined && object.key === manifestKey(id)) ids.push(id);
    }
    return ids.sort();
  }

  async openRestorePoint(id: string, signal?: AbortSignal): Promise<RestorePointReader> {
    const manifest = await this.readManifest(id, signal);
    const indexes = await Promise.all(
      manifest.disks.map((disk) => this.readDiskIndex(manifest, disk.key, signal)),
    );
    return new RestorePointReader(this, manifest, indexes);
  }

  /**
   * Expiry: removes the manifest (the restore point disappears at once), then its indexes.
   * Chunks stay until garbage collection finds them unreferenced.
   */
  async deleteRestorePoint(id: string, signal?: AbortSignal): Promise<void> {
    this.assertRestorePointId(id);
    const options = signal !== undefined ? { signal } : {};
    await this.store.delete(manifestKey(id), options);
    for await (const object of this.store.listAll(restorePointPrefix(id), options)) {
      await this.store.delete(object.key, options);
    }
  }

  async collectGarbage(options: GarbageCollectionOptions = {}): Promise<GarbageCollectionReport> {
    return collectGarbage(this, options);
  }

  async verify(options: VerifyOptions = {}): Promise<VerifyReport> {
    return verifyRepository(this, options);
  }

  async statistics(signal?: AbortSignal): Promise<RepositoryStatistics> {
    return repositoryStatistics(this, signal);
  }

  /** Re-wraps the master key under a new passphrase; chunks are untouched. */
  async changeKey(newKey: RepositorySecret): Promise<void> {
    if (this.masterKey === undefined) {
      throw new RepositoryError(
        'INVALID_ARGUMENT',
        `the repository on remote ${this.store.name} is not encrypted; it has no key to change`,
      );
    }
    const encryption = await rewrapMasterKey(this.masterKey, newKey, this.config);
    const config = { ...this.config, encryption };
    await this.store.put(CONFIG_KEY, Buffer.from(`${JSON.stringify(config, null, 2)}\n`));
    // The old wrapping is gone from the remote: its entries could only ever miss.
    this.keyCache.forget(this.store.name, this.config);
    this.keyCache.remember(this.store.name, newKey, config, this.masterKey);
    this.config = config;
  }

  // ---- metadata objects (indexes and manifests), used by writer, reader, GC and verify ----

  /** @internal */
  async sealMetadata(kind: 'index' | 'manifest', key: string, plaintext: Buffer): Promise<Buffer> {
    return sealObject({
      ...this.metadataSealOptions(kind, key),
      plaintext,
      codec: this.config.compression.codec === 'none' ? 'none' : 'zstd',
    });
  }

  /**
   * A disk index sealed, and the SHA-256 of its encoding (the manifest's `indexDigest`). An index
   * that is mostly chunk ids (random bytes: zstd saves nothing on them) is stored uncompressed and
   * sealed as it is sent, in pieces (a body that a retry produces again); others are compressed
   * whole (the bitmap of a large, sparse disk shrinks to almost nothing).
   * @internal
   */
  async sealDiskIndex(
    key: string,
    index: DiskIndex,
  ): Promise<{ body: Buffer | ReplayableBody; digest: string }> {
    const idsShare = (index.allocatedCount * CHUNK_ID_LENGTH) / index.encodedLength;
    if (this.config.compression.codec !== 'none' && idsShare < UNCOMPRESSED_INDEX_IDS_SHARE) {
      const plaintext = index.encode();
      return {
        body: await this.sealMetadata('index', key, plaintext),
        digest: createHash('sha256').update(plaintext).digest('hex'),
      };
    }
    const digest = createHash('sha256');
    for (const piece of index.encodedPieces()) digest.update(piece);
    return {
      body: uncompressedObjectBody(this.metadataSealOptions('index', key), index.encodedLength, () =>
        index.encodedPieces(),
      ),
      digest: digest.digest('hex'),
    };
  }

  private metadataSealOptions(kind: 'index' | 'manifest', key: string) {
    return {
      kind,
      ...(this.keys !== undefined && this.config.encryption !== null
        ? { cipher: { cipher: chunkCipher(this.config.encryption.cipher), key: this.keys.metadataSeal } }
        : {}),
      associatedData: Buffer.from(key),
      digest: true,
    };
  }

  /**
   * `inPlace`: the object is decrypted into its own bytes (no copy of its size; the caller gives
   * up `object`, and an uncompressed plaintext is a view of it).
   * @internal
   */
  async openMetadata(
    kind: 'index' | 'manifest',
    key: string,
    object: Buffer,
    inPlace = false,
  ): Promise<Buffer> {
    const { plaintext } = await openObject({
      kind,
      object,
      associatedData: Buffer.from(key),
      ...(this.keys !== undefined ? { key: this.keys.metadataSeal } : {}),
      requireEncryption: this.keys !== undefined,
      inPlace,
    });
    return plaintext;
  }

  async readManifest(id: string, signal?: AbortSignal): Promise<RestorePointManifest> {
    this.assertRestorePointId(id);
    const key = manifestKey(id);
    let object: Buffer;
    try {
      object = await this.store.getBuffer(key, signal !== undefined ? { signal } : {});
    } catch (error) {
      if (isRemoteError(error, 'NOT_FOUND')) {
        throw new RepositoryError(
          'RESTORE_POINT_NOT_FOUND',
          `restore point ${id} does not exist in the repository on remote ${this.store.name} (expired, or never committed)`,
          { remote: this.store.name, restorePoint: id, key },
          { cause: error },
        );
      }
      throw error;
    }
    try {
      return parseManifest(await this.openMetadata('manifest', key, object), id);
    } catch (error) {
      if (error instanceof EnvelopeError) {
        throw new RepositoryError(
          'MANIFEST_DAMAGED',
          `the manifest of restore point ${id} on remote ${this.store.name} is damaged (${error.message}); ` +
            'this restore point cannot be used, restore from a mirror',
          { remote: this.store.name, restorePoint: id, key },
        );
      }
      throw error;
    }
  }

  async readDiskIndex(
    manifest: RestorePointManifest,
    diskKey: string,
    signal?: AbortSignal,
  ): Promise<DiskIndex> {
    const disk = manifest.disks.find((candidate) => candidate.key === diskKey);
    if (disk === undefined) {
      throw new RepositoryError(
        'DISK_NOT_FOUND',
        `restore point ${manifest.id} has no disk "${diskKey}" (it has ${manifest.disks.map((d) => d.key).join(', ') || 'none'})`,
        { restorePoint: manifest.id, disk: diskKey },
      );
    }
    const damaged = (reason: string, cause?: unknown): RepositoryError =>
      new RepositoryError(
        'INDEX_DAMAGED',
        `the index of disk ${diskKey} of restore point ${restorePointLabel(manifest)} on remote ${this.store.name} ` +
          `is damaged (${reason}); this restore point cannot be used, restore from a mirror`,
        { remote: this.store.name, restorePoint: manifest.id, disk: diskKey, key: disk.index },
        { cause },
      );
    let object: Buffer;
    try {
      object = await this.store.getBuffer(disk.index, signal !== undefined ? { signal } : {});
    } catch (error) {
      if (isRemoteError(error, 'NOT_FOUND')) throw damaged('index object is missing', error);
      throw error;
    }
    try {
      // The index keeps the plaintext it is decoded from: decrypted in place, one buffer in all.
      const plaintext = await this.openMetadata('index', disk.index, object, true);
      if (createHash('sha256').update(plaintext).digest('hex') !== disk.indexDigest) {
        throw new EnvelopeError('index digest differs from the one in the manifest');
      }
      const index = DiskIndex.decode(plaintext);
      if (index.virtualSize !== disk.virtualSize)
        throw new EnvelopeError('index size differs from the manifest');
      return index;
    } catch (error) {
      if (error instanceof EnvelopeError) throw damaged(error.message, error);
      throw error;
    }
  }

  private assertRestorePointId(id: string): void {
    if (!isRestorePointId(id)) {
      throw new RepositoryError(
        'INVALID_ARGUMENT',
        `"${id}" is not a restore point id (expected like 20261126T070000123Z-0123456789ab)`,
        {
          restorePoint: id,
        },
      );
    }
  }
}
