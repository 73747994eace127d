import {
  type ChunkExistenceMethod,
  type DiskIndex,
  isChunkId,
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
  /**
   * Records the chunks as damaged and the disks whose index holds any of them (one pass over each
   * index, no set of its ids): whether a disk holds one.
   */
  const markChunks = (hexes: readonly string[]): boolean => {
    if (hexes.length === 0) return false;
    // A record edited by hand may name something else: it marks no disk.
    const wanted = SortedChunkIds.fromHex(hexes.filter(isChunkId));
    const holdsAny = (index: DiskIndex): boolean => {
      let holds = false;
      index.forEachChunkId((records, offset) => {
        holds ||= wanted.hasAt(records, offset);
      });
      return holds;
    };
    let found = false;
    for (const disk of reader.disks) {
      if (!holdsAny(disk.index)) continue;
      found = true;
      if (damage.disks !== 'all') damage.disks.add(disk.key);
    }
    for (const hex of hexes) damage.chunks.add(hex);
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
    const named = markChunks(record.chunks);
    // Broken by something other than a chunk (its index): every disk.
    if (!named) damage.disks = 'all';
    damage.reasons.push(`a verify of the repository recorded restore point ${id} as damaged`);
  } else {
    for (const hex of record.chunks) damage.chunks.add(hex);
  }

  if (verification === 'full') {
    const report = await verifyRepository(repository, { restorePoints: [id], ...(signal ? { signal } : {}) });
    const broken = [...report.damagedChunks, ...report.missingChunks];
    markChunks(broken.map((chunk) => chunk.chunkId));
    for (const chunk of broken) damage.reasons.push(`chunk ${chunk.chunkId} is ${chunk.reason}`);
    if (report.brokenRestorePoints.length > 0 && damage.disks !== 'all' && damage.disks.size === 0) {
      damage.disks = 'all';
      damage.reasons.push(...report.brokenRestorePoints.flatMap((point) => point.reasons));
    }
    return damage;
  }

  // Straight from the indexes: a slice at a time where each chunk is asked about, else one sorted
  // set of every disk's ids (ChunkStore.missingAmongIndexes).
  const absent = await repository.chunks.missingAmongIndexes(
    reader.disks.map((disk) => disk.index),
    {
      ...(signal ? { signal } : {}),
      ...(options.existenceMethod !== undefined ? { method: options.existenceMethod } : {}),
    },
  );
  const missing: string[] = [];
  for (const id of absent) {
    // Moved to GC trash while a backup relied on it: still readable.
    if ((await repository.chunks.locate(id, signal)) !== undefined) continue;
    missing.push(id.toString('hex'));
  }
  markChunks(missing);
  for (const hex of missing) damage.reasons.push(`chunk ${hex} is missing`);
  return damage;
}
