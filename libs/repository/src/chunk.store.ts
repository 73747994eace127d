import { timingSafeEqual } from 'node:crypto';
import { isRemoteError, type RemoteStore } from '@haven/remote-sdk';
import { type ChunkExistenceMethod, checksOneByOne, missingChunks } from './chunk.existence';
import { CHUNK_ID_LENGTH, type DiskIndex } from './format/disk-index.codec';
import { ChunkListing } from './chunk.listing';
import { SortedChunkIds } from './sorted-chunk-ids';
import type { CompressionSetting } from './codecs/chunk-codec';
import type { ChunkCipher } from './ciphers/chunk-cipher';
import { chunkKey, chunkIdOfKey, TRASH_BATCHES_PREFIX, trashChunkKey } from './format/repository.layout';
import {
  ENVELOPE_HEADER_LENGTH,
  EnvelopeError,
  isPlaintextInPlace,
  openObject,
  sealObject,
} from './format/object.envelope';
import type { RepositoryKeys } from './repository.keys';
import { type ChunkIdAlgorithm, type ChunkNamer, chunkNamer } from './format/chunk-id';
import { ChunkIntegrityError, RepositoryError, type RepositoryErrorContext } from './repository.errors';

/** Blocks of an index whose ids are checked at once when checked one by one (a set of 2 MiB at most). */
export const INDEX_SLICE_BLOCKS = 65_536;

/** Where a chunk was read from: its home, or a GC trash batch it was moved to (still valid). */
export interface ChunkLocation {
  key: string;
  inTrash: boolean;
}

/**
 * Chunks on the remote: naming (the repository's chunk id algorithm, keyed when encrypted),
 * sealing, and reading back with every check (envelope, tag, re-hash). Never returns bytes that do
 * not hash to the chunk id.
 */
export class ChunkStore {
  /** The chunk id of a block's bytes (format/chunk-id.ts). */
  readonly idOf: ChunkNamer;

  constructor(
    readonly store: RemoteStore,
    private readonly compression: CompressionSetting,
    chunkId: ChunkIdAlgorithm,
    private readonly keys: RepositoryKeys | undefined,
    private readonly cipher: ChunkCipher | undefined,
  ) {
    this.idOf = chunkNamer(chunkId, keys?.chunkId);
  }

  /**
   * The chunk object of a block. With `into` (at least block length + CHUNK_OBJECT_OVERHEAD
   * bytes), the object is written there and a view of it returned: no allocation of the block's
   * size (ingest lends these buffers from a pool). `compression` defaults to the repository's.
   */
  async seal(
    id: Buffer,
    block: Buffer,
    into?: Buffer,
    compression: CompressionSetting = this.compression,
  ): Promise<Buffer> {
    return sealObject({
      ...(into !== undefined ? { into } : {}),
      kind: 'chunk',
      plaintext: block,
      codec: compression.codec,
      ...(compression.level !== undefined ? { level: compression.level } : {}),
      ...(this.keys !== undefined && this.cipher !== undefined
        ? { cipher: { cipher: this.cipher, key: this.keys.chunkSeal } }
        : {}),
      associatedData: id,
      digest: false,
    });
  }

  /**
   * Where `block`'s chunk may be sealed without copying it: `frame` itself when the block's data
   * ends it with room for the object's header before it (DiskBlock.frame) and the repository is
   * unencrypted (a cipher writes its output over the bytes it still has to read). Else undefined.
   */
  frameToSealIn(frame: Buffer | undefined, block: Buffer): Buffer | undefined {
    if (frame === undefined || this.cipher !== undefined) return undefined;
    return isPlaintextInPlace(frame, block) ? frame : undefined;
  }

  /**
   * Idempotent: false when the chunk was already there (another writer, an earlier run). The
   * chunk may be staged: durable and visible only once the remote's flush() resolved (the writer
   * flushes before its manifest).
   */
  async put(id: Buffer, sealed: Buffer, signal?: AbortSignal): Promise<boolean> {
    return this.store.stageIfAbsent(
      chunkKey(id.toString('hex')),
      sealed,
      signal !== undefined ? { signal } : {},
    );
  }

  /** Stores the chunk over whatever object holds its key (a damaged or truncated copy). */
  async replace(id: Buffer, sealed: Buffer, signal?: AbortSignal): Promise<void> {
    await this.store.put(chunkKey(id.toString('hex')), sealed, signal !== undefined ? { signal } : {});
  }

  /** Decodes and checks a chunk object; throws ChunkIntegrityError('CHUNK_DAMAGED') naming what broke. */
  async open(id: Buffer, object: Buffer, context: RepositoryErrorContext): Promise<Buffer> {
    const hex = id.toString('hex');
    let plaintext: Buffer;
    try {
      ({ plaintext } = await openObject({
        kind: 'chunk',
        object,
        associatedData: id,
        ...(this.keys !== undefined ? { key: this.keys.chunkSeal } : {}),
        requireEncryption: this.keys !== undefined,
      }));
    } catch (error) {
      if (error instanceof EnvelopeError) {
        throw new ChunkIntegrityError('CHUNK_DAMAGED', hex, error.message, {
          ...context,
          remote: this.store.name,
        });
      }
      throw error;
    }
    if (!timingSafeEqual(this.idOf(plaintext), id)) {
      throw new ChunkIntegrityError('CHUNK_DAMAGED', hex, 'content does not hash to the chunk id', {
        ...context,
        remote: this.store.name,
      });
    }
    return plaintext;
  }

  /** Reads a chunk (falling back to GC trash, see docs), fully checked. */
  async read(id: Buffer, context: RepositoryErrorContext, signal?: AbortSignal): Promise<Buffer> {
    const location = await this.locate(id, signal);
    if (location === undefined) {
      throw new ChunkIntegrityError(
        'CHUNK_MISSING',
        id.toString('hex'),
        'no object in chunks/ nor in GC trash',
        {
          ...context,
          remote: this.store.name,
        },
      );
    }
    let object: Buffer;
    try {
      object = await this.store.getBuffer(location.key, signal !== undefined ? { signal } : {});
    } catch (error) {
      if (isRemoteError(error, 'NOT_FOUND')) {
        // Moved by a concurrent GC between locate and get: look again once.
        const again = await this.locate(id, signal);
        if (again === undefined) {
          throw new ChunkIntegrityError(
            'CHUNK_MISSING',
            id.toString('hex'),
            'object vanished while reading',
            {
              ...context,
              remote: this.store.name,
            },
          );
        }
        object = await this.store.getBuffer(again.key, signal !== undefined ? { signal } : {});
      } else {
        throw error;
      }
    }
    return this.open(id, object, context);
  }

  /**
   * Where the chunk is: chunks/…, or a trash batch when a GC moved it while a writer still relied
   * on it. Trash lookups are rare (only after a GC raced a backup) and list only batch records.
   */
  async locate(id: Buffer, signal?: AbortSignal): Promise<ChunkLocation | undefined> {
    const hex = id.toString('hex');
    const home = chunkKey(hex);
    const options = signal !== undefined ? { signal } : {};
    if (await this.store.exists(home, options)) return { key: home, inTrash: false };
    for await (const batch of this.store.listAll(TRASH_BATCHES_PREFIX, options)) {
      const batchId = batch.key.slice(TRASH_BATCHES_PREFIX.length).replace(/\.json$/, '');
      const key = trashChunkKey(batchId, hex);
      if (await this.store.exists(key, options)) return { key, inTrash: true };
    }
    // A GC may have restored it from trash meanwhile.
    if (await this.store.exists(home, options)) return { key: home, inTrash: false };
    return undefined;
  }

  /** Which of `ids` have no object in chunks/: see missingChunks for how it is asked. */
  async missingAmong(
    ids: SortedChunkIds,
    options: { signal?: AbortSignal; method?: ChunkExistenceMethod } = {},
  ): Promise<SortedChunkIds> {
    return missingChunks(this.store, ids, options);
  }

  /**
   * The chunks the indexes reference that the remote does not hold, as missingAmong. Where they
   * are checked one by one (checksOneByOne), a slice of INDEX_SLICE_BLOCKS blocks of an index at a
   * time, in block order: no sorted copy of every id beside the indexes (32 MiB for a dense 2 TiB
   * disk; an id held by two slices is asked about twice).
   */
  async missingAmongIndexes(
    indexes: readonly DiskIndex[],
    options: { signal?: AbortSignal; method?: ChunkExistenceMethod; sliceBlocks?: number } = {},
  ): Promise<SortedChunkIds> {
    const { sliceBlocks = INDEX_SLICE_BLOCKS, ...existence } = options;
    const count = indexes.reduce((sum, index) => sum + index.allocatedCount, 0);
    if (!checksOneByOne(this.store, count, options.method ?? 'auto')) {
      const sets = indexes.map((index) => SortedChunkIds.fromRecords((take) => index.forEachChunkId(take)));
      return missingChunks(this.store, sets.length === 1 ? sets[0] : SortedChunkIds.union(sets), existence);
    }
    const absent: SortedChunkIds[] = [];
    // One buffer for every slice's ids: a slice's set is done with before the next is sorted.
    const scratch = Buffer.allocUnsafe(Math.min(sliceBlocks, count) * CHUNK_ID_LENGTH);
    for (const index of indexes) {
      for (let first = 0; first < index.blockCount; first += sliceBlocks) {
        const slice = SortedChunkIds.fromRecords(
          (take) => index.forEachChunkId(take, first, first + sliceBlocks),
          scratch,
        );
        absent.push(await missingChunks(this.store, slice, { ...existence, method: 'per-chunk' }));
      }
    }
    return SortedChunkIds.union(absent);
  }

  /**
   * The ids of every chunk on the remote, 32 bytes each (what a writer needs to skip chunks that
   * exist: not their sizes and dates, which `listing` adds); undefined, the listing stopped, once
   * it holds more than `max`.
   */
  async listIds(signal?: AbortSignal, max = Infinity): Promise<SortedChunkIds | undefined> {
    const ids = new SortedChunkIds();
    // A remote lists in key order (its contract): appended as listed; any other order still works.
    for await (const object of this.objects(signal)) {
      if (!ids.appendAscending(object.id)) ids.add(object.id);
      if (ids.size > max) return undefined;
    }
    return ids;
  }

  /** Whether chunk `id` is stored in chunks/ (GC trash not counted: a writer stores it again). */
  async exists(id: Buffer, signal?: AbortSignal): Promise<boolean> {
    return this.store.exists(chunkKey(id.toString('hex')), signal !== undefined ? { signal } : {});
  }

  /** Every chunk object in chunks/ with its size and time: 48 bytes a chunk (chunk.listing.ts). */
  async listing(signal?: AbortSignal): Promise<ChunkListing> {
    const listing = new ChunkListing(this.store.name);
    for await (const object of this.objects(signal)) listing.add(object.id, object.size, object.modifiedAt);
    return listing;
  }

  /** The chunk objects in chunks/ as the remote lists them (ascending ids), none kept. */
  async *objects(signal?: AbortSignal): AsyncGenerator<{ id: Buffer; size: number; modifiedAt: Date }> {
    for await (const object of this.store.listAll('chunks/', signal !== undefined ? { signal } : {})) {
      const id = chunkIdOfKey(object.key);
      if (id !== undefined)
        yield { id: Buffer.from(id, 'hex'), size: object.size, modifiedAt: object.modifiedAt };
    }
  }
}

/** Bytes a chunk object may add to its block: envelope header, and nonce + tag or a digest. */
export const CHUNK_OBJECT_OVERHEAD = ENVELOPE_HEADER_LENGTH + 32;

export function assertBlockLength(length: number, expected: number, context: RepositoryErrorContext): void {
  if (length !== expected) {
    throw new RepositoryError(
      'INVALID_BLOCK',
      `block ${String(context.block)} of disk ${String(context.disk)} is ${length} bytes, expected ${expected} ` +
        '(2 MiB, or the remainder for the last block of the disk)',
      context,
    );
  }
}
