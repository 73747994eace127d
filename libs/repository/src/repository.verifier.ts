import type { Repository } from './repository';
import { chunkKey } from './format/repository.layout';
import { restorePointLabel } from './format/restore-point.manifest';
import { ChunkIntegrityError, RepositoryError } from './repository.errors';
import { forEachIndexConcurrent, mapConcurrent } from './concurrency';
import type { ChunkListing } from './chunk.listing';
import { CHUNK_ID_LENGTH } from './format/disk-index.codec';
import { SortedChunkIds } from './sorted-chunk-ids';
import { recordDamage } from './damage.record';

export interface VerifyOptions {
  /**
   * Which chunks to re-read and re-hash: all (default), a fraction (0 < sample < 1, chosen at
   * random), or a count (sample >= 1). Presence of every referenced chunk is always checked.
   */
  sample?: number;
  /** Only these restore points (ids) and the chunks they reference; default every one. */
  restorePoints?: readonly string[];
  /**
   * Leave what was found in the repository's damage record (default true), where backups read it:
   * a complete verify replaces the record, a partial one (sample, restorePoints) adds to it.
   */
  record?: boolean;
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (progress: { checkedChunks: number; totalChunks: number }) => void;
}

export interface DamagedChunk {
  chunkId: string;
  key: string;
  reason: string;
  /** Labels of the restore points that reference it. */
  restorePoints: string[];
}

export interface BrokenRestorePoint {
  id: string;
  label: string;
  vmUuid: string | undefined;
  reasons: string[];
}

export interface VerifyReport {
  ok: boolean;
  restorePoints: number;
  chunks: number;
  checkedChunks: number;
  checkedBytes: number;
  damagedChunks: DamagedChunk[];
  missingChunks: DamagedChunk[];
  /** Chunks still referenced but sitting in GC trash (readable; the next GC brings them home). */
  chunksInTrash: number;
  brokenRestorePoints: BrokenRestorePoint[];
}

/** A chunk found damaged or missing, and what it breaks in the restore points that use it. */
interface BadChunk {
  entry: DamagedChunk;
  /** The reason given to each restore point that references it. */
  breaks: string;
}

/** A restore point whose manifest was read: what the second pass needs to find its bad chunks. */
interface ReadablePoint {
  id: string;
  label: string;
  vmUuid: string;
  /** Disks whose index could not be read (already reported). */
  unreadableDisks: Set<string>;
}

/**
 * Re-reads and re-hashes chunks, and names every restore point a bad chunk or index breaks.
 *
 * Memory is per chunk of the repository, not per reference: the referenced chunks once each (32
 * bytes), the listing (48 bytes) and the chunks to check (4 bytes). Which restore points use a
 * bad chunk is found by a second read of the indexes, only when a chunk is bad.
 */
export async function verifyRepository(
  repository: Repository,
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const signal = options.signal;
  const concurrency = options.concurrency ?? 4;
  const broken = new Map<string, BrokenRestorePoint>();
  const breakRestorePoint = (id: string, label: string, vmUuid: string | undefined, reason: string): void => {
    const entry = broken.get(id) ?? { id, label, vmUuid, reasons: [] };
    entry.reasons.push(reason);
    broken.set(id, entry);
  };

  // The chunks the restore points reference, each once.
  const only = options.restorePoints;
  const ids = only !== undefined ? [...new Set(only)] : await repository.listRestorePointIds(signal);
  const referenced = new SortedChunkIds();
  const readable: ReadablePoint[] = [];
  await mapConcurrent(ids, concurrency, async (id) => {
    let manifest;
    try {
      manifest = await repository.readManifest(id, signal);
    } catch (error) {
      if (error instanceof RepositoryError && error.code === 'RESTORE_POINT_NOT_FOUND') {
        // Listed ones expired meanwhile; one asked for by id is reported.
        if (only !== undefined) breakRestorePoint(id, id, undefined, error.message);
        return;
      }
      if (error instanceof RepositoryError) return breakRestorePoint(id, id, undefined, error.message);
      throw error;
    }
    const point: ReadablePoint = {
      id,
      label: restorePointLabel(manifest),
      vmUuid: manifest.vm.uuid,
      unreadableDisks: new Set(),
    };
    readable.push(point);
    for (const disk of manifest.disks) {
      try {
        const index = await repository.readDiskIndex(manifest, disk.key, signal);
        index.forEachChunkId((records, offset) => referenced.addFrom(records, offset));
      } catch (error) {
        if (!(error instanceof RepositoryError)) throw error;
        point.unreadableDisks.add(disk.key);
        breakRestorePoint(id, point.label, manifest.vm.uuid, error.message);
      }
    }
  });

  const stored = await repository.chunks.listing(signal);
  const report: VerifyReport = {
    ok: true,
    restorePoints: ids.length,
    chunks: stored.size,
    checkedChunks: 0,
    checkedBytes: 0,
    damagedChunks: [],
    missingChunks: [],
    chunksInTrash: 0,
    brokenRestorePoints: [],
  };
  const bad = new Map<string, BadChunk>();
  const missing = (hex: string): void => {
    const entry = { chunkId: hex, key: chunkKey(hex), reason: 'missing', restorePoints: [] };
    report.missingChunks.push(entry);
    bad.set(hex, { entry, breaks: `chunk ${hex} is missing` });
  };

  // Presence: every referenced chunk must be at home or (after a GC raced a backup) in trash.
  const absent: number[] = [];
  let position = 0;
  for (const id of referenced) {
    if (!stored.has(id)) absent.push(position);
    position++;
  }
  await forEachIndexConcurrent(absent.length, concurrency, async (at) => {
    const id = Buffer.from(referenced.idAt(absent[at] ?? 0));
    const location = await repository.chunks.locate(id, signal);
    if (location !== undefined) report.chunksInTrash++;
    else missing(id.toString('hex'));
  });

  // Content: re-read, authenticate and re-hash (positions in the listing).
  const toCheck = chunksToCheck(stored, only === undefined ? undefined : referenced, options.sample);
  await forEachIndexConcurrent(toCheck.length, concurrency, async (at) => {
    signal?.throwIfAborted();
    const listed = toCheck[at] ?? 0;
    const id = Buffer.from(stored.idAt(listed));
    const hex = id.toString('hex');
    try {
      // chunks.read follows a chunk a concurrent GC moves to trash: only real damage is reported.
      await repository.chunks.read(id, {}, signal);
      report.checkedBytes += stored.sizeAt(listed);
    } catch (error) {
      if (!(error instanceof ChunkIntegrityError)) throw error;
      if (error.code === 'CHUNK_DAMAGED') {
        const entry = { chunkId: hex, key: chunkKey(hex), reason: error.reason, restorePoints: [] };
        report.damagedChunks.push(entry);
        bad.set(hex, { entry, breaks: `chunk ${hex} is damaged (${error.reason})` });
      } else if (referenced.has(id)) {
        missing(hex);
      }
    }
    report.checkedChunks++;
    options.onProgress?.({ checkedChunks: report.checkedChunks, totalChunks: toCheck.length });
  });

  if (bad.size > 0)
    await nameUsersOfBadChunks(repository, readable, bad, breakRestorePoint, concurrency, signal);

  report.brokenRestorePoints = [...broken.values()].sort((a, b) => a.id.localeCompare(b.id));
  report.ok =
    report.damagedChunks.length === 0 &&
    report.missingChunks.length === 0 &&
    report.brokenRestorePoints.length === 0;
  if (options.record !== false) {
    await recordDamage(
      repository,
      {
        restorePoints: report.brokenRestorePoints.map((point) => point.id),
        chunks: [...report.damagedChunks, ...report.missingChunks].map((chunk) => chunk.chunkId),
        complete: only === undefined && toCheck.length === stored.size,
      },
      signal,
    );
  }
  return report;
}

/**
 * Positions in the listing of the chunks to re-read: all of them, or those `referenced` (a verify
 * of some restore points); then `sample` of them (a fraction, or a count) chosen at random.
 */
function chunksToCheck(
  stored: ChunkListing,
  referenced: SortedChunkIds | undefined,
  sample: number | undefined,
): Uint32Array {
  let positions: Uint32Array;
  if (referenced === undefined) {
    positions = new Uint32Array(stored.size);
    for (let listed = 0; listed < stored.size; listed++) positions[listed] = listed;
  } else {
    const found: number[] = [];
    for (const id of referenced) {
      const listed = stored.positionOf(id);
      if (listed >= 0) found.push(listed);
    }
    positions = Uint32Array.from(found);
  }
  if (sample === undefined || sample <= 0 || (sample >= 1 && sample >= positions.length)) return positions;
  const count = sample < 1 ? Math.max(1, Math.round(positions.length * sample)) : Math.floor(sample);
  // The first `count` of a Fisher-Yates shuffle: a uniform choice.
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(Math.random() * (positions.length - i));
    const chosen = positions[j] ?? 0;
    positions[j] = positions[i] ?? 0;
    positions[i] = chosen;
  }
  return positions.subarray(0, count);
}

/**
 * Reads the readable restore points' indexes again to find which use a bad chunk: each such
 * restore point is broken with the chunk's reason, and named in the chunk's entry.
 */
async function nameUsersOfBadChunks(
  repository: Repository,
  readable: readonly ReadablePoint[],
  bad: ReadonlyMap<string, BadChunk>,
  breakRestorePoint: (id: string, label: string, vmUuid: string | undefined, reason: string) => void,
  concurrency: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const badIds = new SortedChunkIds();
  for (const hex of bad.keys()) badIds.add(Buffer.from(hex, 'hex'));
  const ordered = [...readable].sort((a, b) => a.id.localeCompare(b.id));
  const uses = await mapConcurrent(ordered, concurrency, async (point) => {
    const used = new Set<string>();
    let manifest;
    try {
      manifest = await repository.readManifest(point.id, signal);
    } catch (error) {
      // Expired since the first pass: it breaks nothing now.
      if (error instanceof RepositoryError && error.code === 'RESTORE_POINT_NOT_FOUND') return used;
      throw error;
    }
    for (const disk of manifest.disks) {
      if (point.unreadableDisks.has(disk.key)) continue;
      let index;
      try {
        index = await repository.readDiskIndex(manifest, disk.key, signal);
      } catch (error) {
        // Unreadable since the first pass (expired, or damaged meanwhile): the next verify says so.
        if (error instanceof RepositoryError) continue;
        throw error;
      }
      index.forEachChunkId((records, offset) => {
        if (badIds.hasAt(records, offset))
          used.add(records.toString('hex', offset, offset + CHUNK_ID_LENGTH));
      });
    }
    return used;
  });
  for (const [position, point] of ordered.entries())
    for (const [hex, chunk] of bad)
      if (uses[position]?.has(hex)) {
        chunk.entry.restorePoints.push(point.label);
        breakRestorePoint(point.id, point.label, point.vmUuid, chunk.breaks);
      }
}
