import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { isRemoteError, type RemoteStore } from '@haven/remote-sdk';
import { BufferPool, type Repository } from '@haven/repository';
import { ArchiveError } from './archive.errors';
import {
  ARCHIVES_PREFIX,
  archiveManifestKey,
  archiveOfKey,
  archivePrefix,
  parseArchiveManifestKey,
  segmentKey,
  vmArchivesPrefix,
  type ArchiveLocation,
} from './archive.layout';
import { parseArchiveManifest, type ArchiveManifest, type ArchiveSegment } from './archive.manifest';
import { ArchiveSealer } from './archive.sealer';

export interface CommittedArchive {
  manifestKey: string;
  manifest: ArchiveManifest;
}

/** An archive folder as listed: committed once its manifest exists. */
export interface ArchiveFolder extends ArchiveLocation {
  committed: boolean;
}

function options(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal !== undefined ? { signal } : {};
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Full-backup archives on one remote (see docs/repository-format.md, "Full-backup archives"):
 * segments and manifest written, read back with every segment checked, listed and removed.
 */
export class ArchiveStore {
  /**
   * Buffers segments are sealed into (encrypted repository): a writer reuses one buffer per write
   * in flight (the remote's writesInFlight) instead of allocating a sealed copy per segment, which
   * would stay in memory until the garbage collector's next full collection.
   */
  private sealBuffers: BufferPool | undefined;

  constructor(
    readonly store: RemoteStore,
    readonly sealer: ArchiveSealer,
  ) {}

  /** The archives beside a repository, sealed when the repository is encrypted. */
  static forRepository(repository: Repository): ArchiveStore {
    return new ArchiveStore(repository.store, ArchiveSealer.forRepository(repository));
  }

  /** Stores one segment (sealed when encrypted); `sha256` is the plaintext's, computed once by the caller. */
  async writeSegment(
    location: ArchiveLocation,
    index: number,
    plaintext: Buffer,
    sha256: string,
    signal?: AbortSignal,
  ): Promise<ArchiveSegment> {
    const key = segmentKey(location.vmUuid, location.archiveId, index);
    if (!this.sealer.encrypted) {
      await this.store.put(key, plaintext, options(signal));
      return { size: plaintext.length, storedSize: plaintext.length, sha256 };
    }
    const length = plaintext.length + this.sealer.overhead;
    // Sized by the first (largest) segment; the last, shorter one uses the start of the buffer.
    if (this.sealBuffers === undefined || this.sealBuffers.size < length)
      this.sealBuffers = new BufferPool(length, this.writesInFlight);
    const buffers = this.sealBuffers;
    const target = buffers.acquire();
    const stored = this.sealer.sealSegmentInto(location.archiveId, index, plaintext, target);
    await this.store.put(key, stored, options(signal));
    // Only after a put that succeeded: a failed one may still be reading the buffer (kept from reuse).
    buffers.release(target);
    return { size: plaintext.length, storedSize: stored.length, sha256 };
  }

  /** Segment writes to keep in flight on this remote (see RemoteStore.writesInFlight). */
  get writesInFlight(): number {
    return this.store.writesInFlight ?? 1;
  }

  /** Sealed-segment buffers lent and not given back (for tests). */
  get sealBuffersInUse(): number {
    return this.sealBuffers?.inUse ?? 0;
  }

  /** Writes the manifest: the archive becomes visible. Returns its key. */
  async commit(manifest: ArchiveManifest, signal?: AbortSignal): Promise<string> {
    const key = archiveManifestKey(manifest.vm.uuid, manifest.id);
    const body = this.sealer.sealManifest(manifest.id, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`));
    await this.store.put(key, body, options(signal));
    return key;
  }

  async readManifest(manifestKey: string, signal?: AbortSignal): Promise<ArchiveManifest> {
    const location = parseArchiveManifestKey(manifestKey);
    if (location === undefined)
      throw new ArchiveError(
        'INVALID_ARGUMENT',
        `"${manifestKey}" is not an archive manifest key`,
        manifestKey,
      );
    let stored: Buffer;
    try {
      stored = await this.store.getBuffer(manifestKey, options(signal));
    } catch (error) {
      if (isRemoteError(error, 'NOT_FOUND'))
        throw new ArchiveError(
          'ARCHIVE_NOT_FOUND',
          `archive ${location.archiveId} of VM ${location.vmUuid} does not exist on remote ${this.store.name} (expired, or never committed)`,
          manifestKey,
          { cause: error },
        );
      throw error;
    }
    const manifest = parseArchiveManifest(
      this.sealer.openManifest(location.archiveId, stored, manifestKey),
      manifestKey,
      location.archiveId,
    );
    if (manifest.vm.uuid !== location.vmUuid)
      throw new ArchiveError(
        'MANIFEST_DAMAGED',
        `archive manifest ${manifestKey} is damaged: it names VM ${manifest.vm.uuid}`,
        manifestKey,
      );
    return manifest;
  }

  /** One segment's plaintext, checked against the manifest (size and SHA-256). */
  async readSegment(manifest: ArchiveManifest, index: number, signal?: AbortSignal): Promise<Buffer> {
    const expected = manifest.segments.at(index);
    const key = segmentKey(manifest.vm.uuid, manifest.id, index);
    if (expected === undefined || index < 0)
      throw new ArchiveError('INVALID_ARGUMENT', `archive ${manifest.id} has no segment ${index}`, key);
    let stored: Buffer;
    try {
      stored = await this.store.getBuffer(key, options(signal));
    } catch (error) {
      if (isRemoteError(error, 'NOT_FOUND'))
        throw new ArchiveError(
          'SEGMENT_MISSING',
          `segment ${key} of archive ${manifest.id} is missing on remote ${this.store.name}; this archive cannot be restored`,
          key,
          { cause: error },
        );
      throw error;
    }
    const plaintext = this.sealer.openSegment(manifest.id, index, stored, key);
    if (plaintext.length !== expected.size || sha256Hex(plaintext) !== expected.sha256)
      throw new ArchiveError(
        'SEGMENT_DAMAGED',
        `segment ${key} of archive ${manifest.id} on remote ${this.store.name} is damaged: its content does not match the SHA-256 in the manifest; this archive cannot be restored`,
        key,
      );
    return plaintext;
  }

  /**
   * The XVA stream, segment by segment, in order. `readAhead` segments after the one being consumed
   * are fetched meanwhile (default: the remote's writesInFlight, so that an object store a round
   * trip away streams, and a file system reads one ahead); 0 fetches a segment when asked for, for
   * a consumer that reads ahead itself. Each segment fetched ahead is held in memory.
   */
  async *segments(
    manifest: ArchiveManifest,
    signal?: AbortSignal,
    readAhead = this.writesInFlight,
  ): AsyncGenerator<Buffer, void, undefined> {
    const count = manifest.segments.length;
    const fetching: Promise<Buffer>[] = [];
    let requested = 0;
    try {
      for (let index = 0; index < count; index++) {
        while (requested < count && requested <= index + readAhead) {
          const fetch = this.readSegment(manifest, requested++, signal);
          fetch.catch(() => undefined); // observed on its turn
          fetching.push(fetch);
        }
        const current = fetching.shift();
        if (current === undefined)
          throw new Error(`segment ${index} of archive ${manifest.id} was not fetched`);
        yield await current;
      }
    } finally {
      // Stopped early or failed: no fetch is left running.
      await Promise.allSettled(fetching);
    }
  }

  /**
   * The XVA stream as a Readable. The Readable itself holds the segment after the one being
   * written out; the remote's writesInFlight - 1 more are fetched meanwhile (none on a file system:
   * two segments held).
   */
  createReadStream(manifest: ArchiveManifest, signal?: AbortSignal): Readable {
    return Readable.from(this.segments(manifest, signal, this.writesInFlight - 1), {
      objectMode: false,
      highWaterMark: 1,
    });
  }

  /** Archive folders of a VM, committed or not, oldest first. */
  async folders(vmUuid: string, signal?: AbortSignal): Promise<ArchiveFolder[]> {
    const found = new Map<string, ArchiveFolder>();
    for await (const object of this.store.listAll(vmArchivesPrefix(vmUuid), options(signal))) {
      const location = archiveOfKey(object.key);
      if (location === undefined) continue;
      const folder = found.get(location.archiveId) ?? { ...location, committed: false };
      if (parseArchiveManifestKey(object.key) !== undefined) folder.committed = true;
      found.set(location.archiveId, folder);
    }
    return [...found.values()].sort((a, b) => a.archiveId.localeCompare(b.archiveId));
  }

  /** Keys of every object under `archives/` (of one VM, or all): segments, manifests, left-overs; sorted. */
  async keys(filter: { vmUuid?: string; signal?: AbortSignal } = {}): Promise<string[]> {
    const prefix = filter.vmUuid !== undefined ? vmArchivesPrefix(filter.vmUuid) : ARCHIVES_PREFIX;
    const keys: string[] = [];
    for await (const object of this.store.listAll(prefix, options(filter.signal))) keys.push(object.key);
    return keys.sort();
  }

  /** Committed archives (of one VM, or all), oldest first, with their manifests. */
  async list(filter: { vmUuid?: string; signal?: AbortSignal } = {}): Promise<CommittedArchive[]> {
    const keys = (await this.keys(filter)).filter((key) => parseArchiveManifestKey(key) !== undefined);
    const archives: CommittedArchive[] = [];
    for (const manifestKey of keys)
      archives.push({ manifestKey, manifest: await this.readManifest(manifestKey, filter.signal) });
    return archives;
  }

  /** Removes an archive: the manifest first (it disappears at once), then its segments. */
  async remove(location: ArchiveLocation, signal?: AbortSignal): Promise<void> {
    const manifestKey = archiveManifestKey(location.vmUuid, location.archiveId);
    await this.store.delete(manifestKey, options(signal));
    for await (const object of this.store.listAll(
      archivePrefix(location.vmUuid, location.archiveId),
      options(signal),
    ))
      await this.store.delete(object.key, options(signal));
  }
}
