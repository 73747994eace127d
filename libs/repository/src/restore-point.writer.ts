import type { Repository } from './repository';
import { DiskIndex } from './format/disk-index.codec';
import { diskIndexKey, manifestKey, newRestorePointId, restorePointPrefix } from './format/repository.layout';
import {
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  restorePointLabel,
  type DiskMeta,
  type RestorePointDisk,
  type RestorePointManifest,
  type RestorePointMeta,
} from './format/restore-point.manifest';
import { sharedPageAlignedPool } from './buffer.pool';
import { SortedChunkIds } from './sorted-chunk-ids';
import type { CompressionSetting } from './codecs/chunk-codec';
import { validateCompression } from './codecs/codec.registry';
import { assertBlockLength, CHUNK_OBJECT_OVERHEAD } from './chunk.store';
import type { DiskReader } from './restore-point.reader';
import { RepositoryError } from './repository.errors';
import { DEFAULT_SESSION_TTL_MS, WriterSession } from './writer.session';

/** Whether a chunk is known to exist on the remote. */
type KnownChunks = (id: Buffer) => boolean;

/**
 * The most chunk ids a writer keeps to skip existing chunks without a request: 524,288 ids, 16 MiB
 * (a repository, or a base, of 1 TiB of distinct data). A transfer worker has 256 MiB for
 * everything; an incremental of a densely allocated 2 TiB disk already holds its base's index of
 * 32 MiB (shared with its own: DiskIndex.inheriting).
 */
export const KNOWN_CHUNKS_MAX = 524_288;

/**
 * The most new chunk ids a writer remembers (4 MiB; 256 GiB of distinct blocks), so that a block
 * repeated later in the session is not sealed and sent again. Past it, a repeat of an id it does
 * not hold is sealed and offered: the remote's create-if-absent refuses it (counted reused), or a
 * staging remote may stage it twice. Remembering every id of a densely allocated 2 TiB disk took
 * ~85 MiB (a sorted run grown by a quarter, plus strings waiting to be merged), a third of what a
 * transfer worker has.
 */
export const SESSION_CHUNKS_MAX = 131_072;

export interface DiskBlock {
  /** Block number (offset / 2 MiB). */
  index: number;
  /**
   * 2 MiB (the last block of a disk may be shorter). Owned by the writer once yielded: do not
   * reuse it, unless `release` is given.
   */
  data: Buffer;
  /**
   * Called once when the writer no longer reads `data` (after the zero check, the hash, or the
   * sealing of its chunk): the source may then fill the same buffer again, e.g. from a small
   * pool, instead of allocating 2 MiB per block. Called at most once; when ingest fails, blocks
   * still queued may never be released.
   */
  release?: () => void;
  /**
   * Writable memory that ends with `data`, given to this writer alone (the block is not shared with
   * another writer): with CHUNK_OBJECT_HEADROOM bytes before `data`, an unencrypted repository
   * seals the chunk there, its header written in front of the data, instead of copying the block
   * into an object buffer. `release` then comes after the chunk is stored.
   */
  frame?: Buffer;
}

export interface WriteDiskOptions {
  /**
   * The same disk in an earlier restore point (opened from this repository): blocks not given
   * keep its content. For delta exports (CBT / XAPI base-relative VHD).
   */
  base?: DiskReader;
}

export interface WriteProgress {
  disk: string;
  /** Bytes of blocks handled so far in this restore point (zero blocks included). */
  bytesDone: number;
  /** From options.expectedBytes, else the sum of the virtual sizes of the disks started so far. */
  bytesTotal: number;
  uploadedChunks: number;
  uploadedBytes: number;
  reusedChunks: number;
  zeroBlocks: number;
}

export interface RestorePointWriterOptions {
  onProgress?: (progress: WriteProgress) => void;
  /** Chunks sealed and uploaded at once (memory: about 2 × 2 MiB each). Default 4. */
  concurrency?: number;
  signal?: AbortSignal;
  /** Total bytes for progress when known in advance (e.g. the sum of the disks' sizes). */
  expectedBytes?: number;
  /** How long the writer's marker stays live without renewal (GC protocol). Default 10 min. */
  sessionTtlMs?: number;
  /**
   * How the writer learns which chunks exist, so that it skips them without a request each:
   * 'list' (default): list chunks/ once at start (one request per 1000 chunks; 32 bytes of
   * memory per chunk of the repository, SortedChunkIds);
   * { restorePoints: [...] }: the chunks of these restore points (e.g. the previous backup of the
   * same VM: cheap on huge repositories, and what an incremental run mostly reuses);
   * 'none': rely on putIfAbsent alone (each block is sealed and offered; duplicates are refused).
   * Past `knownChunksMax` chunks (listed, or referenced by the restore points) the writer keeps
   * none of them and asks the remote whether each chunk exists before it uploads it (a stat or
   * HEAD a chunk, not a body sent to be refused): its memory stays bounded whatever the size of
   * the repository or of the base.
   */
  knownChunks?: 'list' | 'none' | { restorePoints: readonly string[] };
  /** The most chunk ids `knownChunks` keeps (32 bytes each). Default KNOWN_CHUNKS_MAX. */
  knownChunksMax?: number;
  /** The most new chunk ids the writer remembers across its disks. Default SESSION_CHUNKS_MAX. */
  sessionChunksMax?: number;
  /** The time recorded as createdAt (e.g. the snapshot time). Default: now. */
  createdAt?: Date;
  /**
   * Chunks (hex ids) known to be damaged or missing on the remote: never taken as existing, and
   * uploaded over whatever object is stored under their key, so this restore point is sound.
   */
  rewriteChunks?: ReadonlySet<string>;
  /**
   * How this writer compresses the chunks it uploads (a job's own setting). Every object records
   * its codec, so a repository holds any mix and reads them all. Default: the repository's
   * setting. A level left out is the repository's when the codec is the same, else the codec's.
   */
  compression?: CompressionSetting;
}

/** A writer's chunk compression: its own setting (checked), completed from the repository's. */
function chunkCompression(
  own: CompressionSetting | undefined,
  repository: CompressionSetting,
): CompressionSetting {
  if (own === undefined) return repository;
  const level = own.level ?? (own.codec === repository.codec ? repository.level : undefined);
  return validateCompression(level === undefined ? { codec: own.codec } : { codec: own.codec, level });
}

/**
 * Writes one restore point: disks first (chunks, then each disk's index), the manifest last.
 * Until commit() nothing is visible; abort() (or a crash) leaves only unreferenced objects that
 * garbage collection removes.
 */
export class RestorePointWriter {
  readonly id: string;
  /** By the position each disk was started at (its index object's number). */
  private readonly disks: (RestorePointDisk | undefined)[] = [];
  /** Keys of disks started, written or being written. */
  private readonly diskKeys = new Set<string>();
  /** writeDisk calls in progress (several disks may be written at once). */
  private writing = 0;
  /** 'ask': too many to keep; each chunk's existence is asked of the remote before its upload. */
  private readonly knownChunks: KnownChunks | 'ask';
  /**
   * Chunks written or confirmed during this session (one upload per id, even across disks):
   * ~32 bytes each (sorted-chunk-ids.ts), SESSION_CHUNKS_MAX of them at most.
   */
  private readonly sessionChunks = new SortedChunkIds();
  private readonly createdAt: Date;
  private state: 'open' | 'failed' | 'committed' | 'aborted' = 'open';
  private bytesDone = 0;
  private bytesTotal = 0;
  private counters = { uploadedChunks: 0, uploadedBytes: 0, reusedChunks: 0, zeroBlocks: 0 };

  /** How the chunks this writer uploads are compressed. */
  private readonly compression: CompressionSetting;

  private constructor(
    private readonly repository: Repository,
    private readonly meta: RestorePointMeta,
    private readonly options: RestorePointWriterOptions,
    private readonly session: WriterSession,
    knownChunks: KnownChunks | 'ask',
    id: string,
    compression: CompressionSetting,
  ) {
    this.id = id;
    this.knownChunks = knownChunks;
    this.createdAt = options.createdAt ?? new Date();
    this.compression = compression;
  }

  /** @internal use Repository.createRestorePointWriter */
  static async start(
    repository: Repository,
    meta: RestorePointMeta,
    options: RestorePointWriterOptions,
  ): Promise<RestorePointWriter> {
    if (typeof meta.vm.uuid !== 'string' || meta.vm.uuid === '' || typeof meta.vm.name !== 'string') {
      throw new RepositoryError('INVALID_ARGUMENT', 'restore point meta needs vm.uuid and vm.name');
    }
    const compression = chunkCompression(options.compression, repository.compression);
    options.signal?.throwIfAborted();
    const id = newRestorePointId(options.createdAt);
    // Register BEFORE listing chunks: a GC that moves a listed chunk to trash then sees this session.
    const session = await WriterSession.register(
      repository.store,
      id,
      options.sessionTtlMs ?? DEFAULT_SESSION_TTL_MS,
    );
    let known: KnownChunks | 'ask' = () => false;
    try {
      const source = options.knownChunks ?? 'list';
      const max = options.knownChunksMax ?? KNOWN_CHUNKS_MAX;
      if (source === 'list') {
        // 32 bytes per chunk of the whole repository, not a string each (sorted-chunk-ids.ts).
        const listed = await repository.chunks.listIds(options.signal, max);
        known = listed === undefined ? 'ask' : (id) => listed.has(id);
      } else if (source !== 'none') {
        const manifests = [];
        for (const base of source.restorePoints)
          manifests.push(await repository.readManifest(base, options.signal));
        const referenced = manifests.reduce(
          (sum, manifest) => sum + manifest.disks.reduce((blocks, disk) => blocks + disk.allocatedBlocks, 0),
          0,
        );
        if (referenced > max) known = 'ask';
        else {
          const fromBases = new SortedChunkIds();
          known = (id) => fromBases.has(id);
          // Chunks of committed restore points exist; if one expires meanwhile, GC protects them
          // for this session like listed chunks (the session was registered first).
          for (const manifest of manifests) {
            for (const disk of manifest.disks) {
              const index = await repository.readDiskIndex(manifest, disk.key, options.signal);
              index.forEachChunkId((records, offset) => fromBases.addFrom(records, offset));
            }
          }
        }
      }
    } catch (error) {
      await session.end().catch(() => undefined);
      throw error;
    }
    return new RestorePointWriter(repository, meta, options, session, known, id, compression);
  }

  /**
   * Streams one disk's blocks in (any order, each block at most once). Blocks not given read as
   * zeros, or, with `base`, as in that disk of an earlier restore point: a delta export (only the
   * blocks changed since the base snapshot) then still makes a full restore point. Several disks
   * may be written at once; the manifest lists them in the order they were started.
   */
  async writeDisk(
    disk: DiskMeta,
    blocks: AsyncIterable<DiskBlock> | Iterable<DiskBlock>,
    options: WriteDiskOptions = {},
  ): Promise<RestorePointDisk> {
    this.assertState('open');
    if (this.diskKeys.has(disk.key)) {
      throw new RepositoryError(
        'INVALID_ARGUMENT',
        `disk "${disk.key}" was already written to restore point ${this.id}`,
        {
          restorePoint: this.id,
          disk: disk.key,
        },
      );
    }
    if (!Number.isSafeInteger(disk.virtualSize) || disk.virtualSize <= 0) {
      throw new RepositoryError(
        'INVALID_ARGUMENT',
        `disk "${disk.key}" has invalid virtual size ${disk.virtualSize}`,
        {
          restorePoint: this.id,
          disk: disk.key,
        },
      );
    }
    this.diskKeys.add(disk.key);
    const position = this.disks.length;
    this.disks.push(undefined);
    this.writing++;
    try {
      const entry = await this.ingestDisk(disk, blocks, options.base, position);
      this.disks[position] = entry;
      this.writing--;
      return entry;
    } catch (error) {
      this.writing--;
      this.state = 'failed';
      // A failed writer can never commit: stop holding back GC now (abort() still tidies up).
      await this.session.end().catch(() => undefined);
      throw error;
    }
  }

  /** Writes the manifest: from now on the restore point exists. */
  async commit(): Promise<RestorePointManifest> {
    this.assertState('open');
    if (this.writing > 0) {
      throw new RepositoryError(
        'WRITER_CLOSED',
        `restore point writer ${this.id} is still writing ${this.writing} disk(s); wait for writeDisk to finish`,
        { restorePoint: this.id },
      );
    }
    this.options.signal?.throwIfAborted();
    // Chunks may have been staged (written without a sync each): durable before the manifest
    // that makes them part of a restore point.
    await this.repository.store.flush(this.options.signal ? { signal: this.options.signal } : {});
    await this.session.renew();
    this.session.assertAlive();
    const disks = this.disks.filter((disk): disk is RestorePointDisk => disk !== undefined);
    const manifest: RestorePointManifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      id: this.id,
      ...this.meta,
      createdAt: this.createdAt.toISOString(),
      committedAt: new Date().toISOString(),
      disks,
      sizes: {
        logicalBytes: disks.reduce((sum, disk) => sum + disk.logicalBytes, 0),
        uploadedBytes: disks.reduce((sum, disk) => sum + disk.uploadedBytes, 0),
      },
      writer: { session: this.session.id, host: this.session.host },
    };
    const key = manifestKey(this.id);
    const sealed = await this.repository.sealMetadata('manifest', key, Buffer.from(JSON.stringify(manifest)));
    const created = await this.repository.store.putIfAbsent(key, sealed);
    if (!created) {
      this.state = 'failed';
      throw new RepositoryError(
        'INVALID_ARGUMENT',
        `restore point ${restorePointLabel(manifest)} already exists; ids must be unique`,
        {
          restorePoint: this.id,
        },
      );
    }
    this.state = 'committed';
    await this.session.end().catch(() => undefined);
    return manifest;
  }

  /** Drops what was written (indexes; chunks are left for GC) and ends the session. */
  async abort(): Promise<void> {
    if (this.state === 'committed' || this.state === 'aborted') return;
    this.state = 'aborted';
    try {
      for await (const object of this.repository.store.listAll(restorePointPrefix(this.id))) {
        await this.repository.store.delete(object.key);
      }
    } finally {
      await this.session.end();
    }
  }

  private async ingestDisk(
    disk: DiskMeta,
    blocks: AsyncIterable<DiskBlock> | Iterable<DiskBlock>,
    base: DiskReader | undefined,
    position: number,
  ): Promise<RestorePointDisk> {
    const blockSize = this.repository.blockSize;
    let index = new DiskIndex(disk.virtualSize, blockSize);
    let inheritedBlocks = 0;
    if (base !== undefined) {
      if (base.blockSize !== blockSize) {
        throw new RepositoryError(
          'INVALID_ARGUMENT',
          `base disk "${base.key}" has blocks of ${base.blockSize} bytes, this repository ${blockSize}`,
          { restorePoint: base.restorePoint.id, disk: disk.key },
        );
      }
      // Checked after this session registered: if the base still exists now, a GC that trashes
      // its chunks later sees this session and keeps them (docs, "Garbage collection").
      if (!(await this.repository.store.exists(manifestKey(base.restorePoint.id)))) {
        throw new RepositoryError(
          'RESTORE_POINT_NOT_FOUND',
          `base restore point ${restorePointLabel(base.restorePoint)} of disk "${disk.key}" expired before this ` +
            'backup started; run a full backup (no base)',
          { restorePoint: base.restorePoint.id, disk: disk.key },
        );
      }
      // Shares the base's ids until a block changes (a page of 256 blocks is copied then).
      index = DiskIndex.inheriting(base.index, disk.virtualSize);
      inheritedBlocks = index.allocatedCount;
    }
    const seen = new Uint8Array(Math.ceil(index.blockCount / 8));
    const zero = Buffer.alloc(blockSize);
    const concurrency = Math.max(1, this.options.concurrency ?? 4);
    const signal = this.options.signal;
    const inFlight = new Set<Promise<void>>();
    let uploadError: Error | undefined;
    const perDisk = { uploadedChunks: 0, uploadedBytes: 0, reusedChunks: 0 };
    if (this.options.expectedBytes === undefined) this.bytesTotal += disk.virtualSize;

    const rewrite = this.options.rewriteChunks;
    // Chunk objects are sealed into these (one per chunk in flight) rather than into a fresh
    // 2 MiB allocation each (docs/benchmarks/repository.md says what that saves); page-aligned, so
    // a file-system remote writes them around the page cache (docs/remotes.md, "Direct writes").
    const objects = sharedPageAlignedPool(blockSize + CHUNK_OBJECT_OVERHEAD);
    const upload = async (id: Buffer, data: Buffer, replace: boolean, block: DiskBlock): Promise<void> => {
      if (!replace && this.knownChunks === 'ask' && (await this.repository.chunks.exists(id, signal))) {
        // Stored already (too many chunks to keep their ids): reused, nothing sealed or sent.
        block.release?.();
        perDisk.reusedChunks++;
        this.counters.reusedChunks++;
        return;
      }
      // A rewrite overwrites an existing object: an attempt the remote abandoned (timeout) and
      // that still ran later must not find reused bytes, so those get a buffer of their own.
      // Sealed over the block's own frame when it has one (no copy of the block): the block then
      // stays this writer's until the chunk is stored.
      const frame = replace ? undefined : this.repository.chunks.frameToSealIn(block.frame, data);
      const into = replace ? undefined : (frame ?? objects.acquire());
      // What holds the sealed object goes back once it is stored: the block, or the pool's buffer.
      const giveBackObject = (): void => {
        if (frame !== undefined) block.release?.();
        else if (into !== undefined) objects.release(into);
      };
      let sealed: Buffer;
      try {
        sealed = await this.repository.chunks.seal(id, data, into, this.compression);
      } catch (error) {
        giveBackObject();
        throw error;
      } finally {
        // Read no more (unless the object is the block's own frame).
        if (frame === undefined) block.release?.();
      }
      signal?.throwIfAborted();
      let created = true;
      if (replace) await this.repository.chunks.replace(id, sealed, signal);
      else created = await this.repository.chunks.put(id, sealed, signal);
      // Only after a put that succeeded: the remote has stopped reading the body (a failed put
      // may leave an abandoned attempt behind, so that buffer is left to the garbage collector).
      giveBackObject();
      if (created) {
        perDisk.uploadedChunks++;
        perDisk.uploadedBytes += sealed.length;
        this.counters.uploadedChunks++;
        this.counters.uploadedBytes += sealed.length;
      } else {
        perDisk.reusedChunks++;
        this.counters.reusedChunks++;
      }
    };

    try {
      for await (const block of blocks) {
        if (uploadError !== undefined) break;
        signal?.throwIfAborted();
        const context = { restorePoint: this.id, disk: disk.key, block: block.index };
        if (!Number.isInteger(block.index) || block.index < 0 || block.index >= index.blockCount) {
          throw new RepositoryError(
            'INVALID_BLOCK',
            `block ${block.index} is outside disk "${disk.key}" (${index.blockCount} blocks of 2 MiB)`,
            context,
          );
        }
        const bit = 0x80 >> (block.index & 7);
        if (((seen[block.index >> 3] ?? 0) & bit) !== 0) {
          throw new RepositoryError(
            'INVALID_BLOCK',
            `block ${block.index} of disk "${disk.key}" was given twice`,
            context,
          );
        }
        seen[block.index >> 3] = (seen[block.index >> 3] ?? 0) | bit;
        const expected = index.blockLength(block.index);
        // A VHD source pads the last block to 2 MiB: keep only the bytes inside the disk.
        const data =
          block.data.length === blockSize && expected < blockSize
            ? block.data.subarray(0, expected)
            : block.data;
        assertBlockLength(data.length, expected, context);
        this.bytesDone += data.length;
        if (data.equals(zero.subarray(0, data.length))) {
          if (index.has(block.index)) inheritedBlocks--;
          index.set(block.index, undefined);
          this.counters.zeroBlocks++;
          block.release?.();
          this.reportProgress(disk.key);
          continue;
        }
        const id = this.repository.chunks.idOf(data);
        if (index.has(block.index)) inheritedBlocks--;
        index.set(block.index, id);
        const replace = rewrite !== undefined && rewrite.size > 0 && rewrite.has(id.toString('hex'));
        // Known to exist, or already written in this session: reused.
        const known = !replace && this.knownChunks !== 'ask' && this.knownChunks(id);
        if (known || this.sentInSession(id)) {
          perDisk.reusedChunks++;
          this.counters.reusedChunks++;
          block.release?.();
          this.reportProgress(disk.key);
          continue;
        }
        const task: Promise<void> = upload(id, data, replace, block).then(
          () => {
            inFlight.delete(task);
            this.reportProgress(disk.key);
          },
          (error: unknown) => {
            inFlight.delete(task);
            uploadError ??= error instanceof Error ? error : new Error(String(error));
          },
        );
        inFlight.add(task);
        // Back-pressure: the source is not read further while `concurrency` chunks are in flight.
        if (inFlight.size >= concurrency) await Promise.race(inFlight);
      }
    } finally {
      // Tasks never reject (errors land in uploadError): waiting for them cannot throw.
      await Promise.all(inFlight);
    }
    if (uploadError !== undefined) throw uploadError;

    const indexKey = diskIndexKey(this.id, position);
    const sealed = await this.repository.sealDiskIndex(indexKey, index);
    await this.repository.store.put(indexKey, sealed.body, signal ? { signal } : {});
    return {
      ...disk,
      index: indexKey,
      indexDigest: sealed.digest,
      blockSize,
      allocatedBlocks: index.allocatedCount,
      logicalBytes: index.allocatedBytes(),
      ...(base !== undefined ? { base: base.restorePoint.id, inheritedBlocks } : {}),
      ...perDisk,
    };
  }

  /**
   * Whether this session already sent `id`; remembers it for the next time while fewer than
   * sessionChunksMax ids are held.
   */
  private sentInSession(id: Buffer): boolean {
    if (this.sessionChunks.size < (this.options.sessionChunksMax ?? SESSION_CHUNKS_MAX))
      return !this.sessionChunks.add(id);
    return this.sessionChunks.has(id);
  }

  private reportProgress(disk: string): void {
    this.options.onProgress?.({
      disk,
      bytesDone: this.bytesDone,
      bytesTotal: this.options.expectedBytes ?? this.bytesTotal,
      ...this.counters,
    });
  }

  private assertState(expected: 'open'): void {
    if (this.state !== expected) {
      throw new RepositoryError(
        'WRITER_CLOSED',
        `restore point writer ${this.id} is ${this.state}; start a new writer`,
        { restorePoint: this.id },
      );
    }
  }
}
