import {
  type ChunkExistenceMethod,
  isRepositoryError,
  readDamageRecord,
  verifyRepository,
  type Repository,
  type RestorePointReader,
  SortedChunkIds,
} from '@haven/repository';
import type { BaseVerification } from './backup-incremental.settings';

/** What is wrong with a base restore point on one remote. */
export interface BaseDamage {
  /** Keys of the disks it breaks, or all of them (e.g. the verify record names no chunk of it). */
  disks: Set<string> | 'all';
  /** Hex ids of chunks known missing or damaged: a full backup uploads them again. */
  chunks: Set<string>;
  /** Why, for the run log. */
  reasons: string[];
}

export function noDamage(): BaseDamage {
  return { disks: new Set(), chunks: new Set(), reasons: [] };
}

export function isDamaged(damage: BaseDamage): boolean {
  return damage.disks === 'all' || damage.disks.size > 0;
}

/**
 * Checks the base restore point before a delta is built on it: the damage a verify of the
 * repository recorded, then (`existence`) that every chunk its indexes reference is stored (a
 * stat or HEAD each, or listings of the chunk folders, whichever costs fewer requests: see
 * missingChunks; a lookup in GC trash for the few absent), or (`full`) also that
 * each re-reads and re-hashes to its id (the repository verifier on that restore point alone).
 */
export async function inspectBase(
  repository: Repository,
  reader: RestorePointReader,
  verification: BaseVerification,
  warn: (message: string) => void,
  signal?: AbortSignal,
  options: { existenceMethod?: ChunkExistenceMethod } = {},
): Promise<BaseDamage> {
  const damage = noDamage();
  const id = reader.manifest.id;
  // Each disk's chunk ids, once each and 32 bytes apiece (not a hex string per chunk).
  const chunksOfDisk = new Map<string, SortedChunkIds>();
  for (const disk of reader.manifest.disks) {
    const { index } = reader.disk(disk.key);
    // Sorted from the index's records directly: no string per id (a dense 2 TiB disk has a million).
    chunksOfDisk.set(
      disk.key,
      SortedChunkIds.fromRecords((take) => index.forEachChunkId(take)),
    );
  }
  const markChunk = (hex: string): boolean => {
    let found = false;
    const id = Buffer.from(hex, 'hex');
    for (const [key, chunks] of chunksOfDisk) {
      if (!chunks.has(id)) continue;
      found = true;
      if (damage.disks !== 'all') damage.disks.add(key);
    }
    damage.chunks.add(hex);
    return found;
  };

  let record = { restorePoints: [] as string[], chunks: [] as string[] };
  try {
    record = await readDamageRecord(repository, signal);
  } catch (error) {
    // An unreadable record must not stop backups: the checks below still run.
    if (!isRepositoryError(error, 'INVALID_ARGUMENT')) throw error;
    warn(error.message);
  }
  if (record.restorePoints.includes(id)) {
    let named = false;
    for (const hex of record.chunks) named = markChunk(hex) || named;
    // Broken by something other than a chunk (its index): every disk.
    if (!named) damage.disks = 'all';
    damage.reasons.push(`a verify of the repository recorded restore point ${id} as damaged`);
  } else {
    for (const hex of record.chunks) damage.chunks.add(hex);
  }

  if (verification === 'full') {
    const report = await verifyRepository(repository, { restorePoints: [id], ...(signal ? { signal } : {}) });
    for (const chunk of [...report.damagedChunks, ...report.missingChunks]) {
      markChunk(chunk.chunkId);
      damage.reasons.push(`chunk ${chunk.chunkId} is ${chunk.reason}`);
    }
    if (report.brokenRestorePoints.length > 0 && damage.disks !== 'all' && damage.disks.size === 0) {
      damage.disks = 'all';
      damage.reasons.push(...report.brokenRestorePoints.flatMap((point) => point.reasons));
    }
    return damage;
  }

  // Every disk's ids at once, still 32 bytes each (one disk's set itself: no copy).
  const disks = [...chunksOfDisk.values()];
  const referenced = disks.length === 1 ? disks[0] : SortedChunkIds.union(disks);
  const absent = await repository.chunks.missingAmong(referenced, {
    ...(signal ? { signal } : {}),
    ...(options.existenceMethod !== undefined ? { method: options.existenceMethod } : {}),
  });
  for (const id of absent) {
    // Moved to GC trash while a backup relied on it: still readable.
    if ((await repository.chunks.locate(id, signal)) !== undefined) continue;
    const hex = id.toString('hex');
    markChunk(hex);
    damage.reasons.push(`chunk ${hex} is missing`);
  }
  return damage;
}
