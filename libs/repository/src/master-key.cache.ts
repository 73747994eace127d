import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { RepositoryConfig } from './format/repository.config';
import { unwrapMasterKey, type RepositorySecret } from './repository.keys';

/** Recovers a repository's master key from its secret (scrypt, then the key check). */
export type MasterKeyUnwrap = (
  remote: string,
  secret: RepositorySecret,
  config: RepositoryConfig,
) => Promise<Buffer>;

export interface MasterKeyCacheOptions {
  /** Repositories whose keys are kept at most; the least recently used goes first. */
  capacity?: number;
  /** A key not used for this long is dropped. */
  idleMs?: number;
  /** The derivation a miss runs; tests count its calls. */
  unwrap?: MasterKeyUnwrap;
  /** Milliseconds clock, for the idle expiry. */
  now?: () => number;
}

export const MASTER_KEY_CACHE_CAPACITY = 64;
export const MASTER_KEY_CACHE_IDLE_MS = 15 * 60 * 1000;

interface Entry {
  /** Pending while the first opener derives it; settled entries hold the key. */
  key: Promise<Buffer>;
  settled: Buffer | undefined;
  lastUsed: number;
}

/**
 * Master keys this process has unwrapped, so a worker pays the scrypt derivation (N=2^15, r=8:
 * 32 MiB and ~0.1 s) once per repository, not once per task (docs/benchmarks/jobs.md, "Worker
 * memory: key cache, malloc arenas, restore").
 *
 * An entry is found only with the same remote, the same repository identity and encryption block
 * (repository id, block size, chunk id, cipher, scrypt parameters and salt, wrapped key, key check)
 * and the same secret: a re-wrapped key or any edit of repository.json misses and derives again. The
 * secret itself is never kept, only an HMAC of it under a key drawn at random when the process
 * starts. A failed unwrap (WRONG_KEY) is not kept. A key is dropped after `idleMs` without use, or
 * when `capacity` other repositories were used since; callers get copies, so dropping never
 * changes a key a repository opened earlier is using.
 */
export class MasterKeyCache {
  private readonly entries = new Map<string, Entry>();
  private readonly secretDigestKey = randomBytes(32);
  private readonly capacity: number;
  private readonly idleMs: number;
  private readonly unwrapKey: MasterKeyUnwrap;
  private readonly now: () => number;
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(options: MasterKeyCacheOptions = {}) {
    this.capacity = options.capacity ?? MASTER_KEY_CACHE_CAPACITY;
    this.idleMs = options.idleMs ?? MASTER_KEY_CACHE_IDLE_MS;
    this.unwrapKey = options.unwrap ?? unwrapMasterKey;
    this.now = options.now ?? Date.now;
    if (!Number.isInteger(this.capacity) || this.capacity < 1)
      throw new Error(`master key cache capacity must be a positive integer, not ${this.capacity}`);
    if (!(this.idleMs > 0)) throw new Error(`master key cache idleMs must be positive, not ${this.idleMs}`);
  }

  /** Keys held now (pending derivations included). */
  get size(): number {
    return this.entries.size;
  }

  /** The master key of an encrypted repository: from memory, else unwrapped (and then kept). */
  async unwrap(remote: string, secret: RepositorySecret, config: RepositoryConfig): Promise<Buffer> {
    this.dropIdle();
    const id = this.entryId(remote, secret, config);
    const found = this.entries.get(id);
    if (found !== undefined) {
      found.lastUsed = this.now();
      // Most recently used last: Map keeps insertion order.
      this.entries.delete(id);
      this.entries.set(id, found);
      return Buffer.from(await found.key);
    }
    const entry: Entry = {
      key: this.unwrapKey(remote, secret, config),
      settled: undefined,
      lastUsed: this.now(),
    };
    this.insert(id, entry);
    try {
      entry.settled = await entry.key;
      entry.lastUsed = this.now();
      this.scheduleSweep();
    } catch (error) {
      // A wrong secret (or a remote that failed) is never remembered.
      if (this.entries.get(id) === entry) this.entries.delete(id);
      throw error;
    }
    return Buffer.from(entry.settled);
  }

  /** Keeps a key this process just created or re-wrapped, with the secret that opens it. */
  remember(remote: string, secret: RepositorySecret, config: RepositoryConfig, masterKey: Buffer): void {
    this.dropIdle();
    const settled = Buffer.from(masterKey);
    this.insert(this.entryId(remote, secret, config), {
      key: Promise.resolve(settled),
      settled,
      lastUsed: this.now(),
    });
  }

  /** Drops every key kept for this repository configuration (whatever the secret). */
  forget(remote: string, config: RepositoryConfig): void {
    const prefix = this.configId(remote, config);
    for (const id of [...this.entries.keys()]) if (id.startsWith(prefix)) this.drop(id);
  }

  /** Drops every key. */
  clear(): void {
    for (const id of [...this.entries.keys()]) this.drop(id);
  }

  private insert(id: string, entry: Entry): void {
    this.entries.delete(id);
    this.entries.set(id, entry);
    for (const oldest of [...this.entries.keys()]) {
      if (this.entries.size <= this.capacity) break;
      this.drop(oldest);
    }
    this.scheduleSweep();
  }

  private drop(id: string): void {
    this.entries.delete(id);
    if (this.entries.size === 0 && this.sweepTimer !== undefined) {
      clearTimeout(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  private dropIdle(): void {
    const limit = this.now() - this.idleMs;
    for (const [id, entry] of [...this.entries])
      if (entry.settled !== undefined && entry.lastUsed <= limit) this.drop(id);
  }

  /** Idle keys leave memory even when no repository is opened again: a timer at the next expiry. */
  private scheduleSweep(): void {
    if (this.sweepTimer !== undefined) return;
    let oldest = Infinity;
    for (const entry of this.entries.values())
      if (entry.settled !== undefined) oldest = Math.min(oldest, entry.lastUsed);
    if (oldest === Infinity) return;
    const delay = Math.max(0, oldest + this.idleMs - this.now());
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = undefined;
      this.dropIdle();
      this.scheduleSweep();
    }, delay + 1);
    this.sweepTimer.unref();
  }

  private configId(remote: string, config: RepositoryConfig): string {
    const encryption = config.encryption;
    // Every field the unwrap and its key check read, in a fixed order.
    const identity = JSON.stringify([
      remote,
      config.repositoryId,
      config.blockSize,
      config.chunkId,
      encryption?.cipher,
      encryption?.kdf.name,
      encryption?.kdf.N,
      encryption?.kdf.r,
      encryption?.kdf.p,
      encryption?.kdf.salt,
      encryption?.wrappedKey,
      encryption?.keyCheck,
    ]);
    return `${createHash('sha256').update(identity).digest('base64')}:`;
  }

  private entryId(remote: string, secret: RepositorySecret, config: RepositoryConfig): string {
    const secretDigest = createHmac('sha256', this.secretDigestKey).update(secret).digest('base64');
    return `${this.configId(remote, config)}${secretDigest}`;
  }
}

/** The process's cache, used by openRepository unless told otherwise. */
export const processMasterKeys = new MasterKeyCache();
