import type { Repository } from './repository';
import { chunkKey } from './format/repository.layout';
import { restorePointLabel } from './format/restore-point.manifest';
import { ChunkIntegrityError, RepositoryError } from './repository.errors';
import { mapConcurrent } from './concurrency';
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

/** Re-reads and re-hashes chunks, and names every restore point a bad chunk or index breaks. */
export async function verifyRepository(
  repository: Repository,
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const signal = options.signal;
  const concurrency = options.concurrency ?? 4;
  const broken = new Map<string, BrokenRestorePoint>();
  const users = new Map<string, Set<string>>();
  const breakRestorePoint = (id: string, label: string, vmUuid: string | undefined, reason: string): void => {
    const entry = broken.get(id) ?? { id, label, vmUuid, reasons: [] };
    entry.reasons.push(reason);
    broken.set(id, entry);
  };

  const only = options.restorePoints;
  const ids = only !== undefined ? [...new Set(only)] : await repository.listRestorePointIds(signal);
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
    const label = restorePointLabel(manifest);
    for (const disk of manifest.disks) {
      try {
        const index = await repository.readDiskIndex(manifest, disk.key, signal);
        for (const chunk of index.chunkIds()) {
          const hex = chunk.toString('hex');
          let set = users.get(hex);
          if (set === undefined) users.set(hex, (set = new Set()));
          set.add(`${id}\u0000${label}\u0000${manifest.vm.uuid}`);
        }
      } catch (error) {
        if (error instanceof RepositoryError) breakRestorePoint(id, label, manifest.vm.uuid, error.message);
        else throw error;
      }
    }
  });

  const stored = await repository.chunks.list(signal);
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
  const labelsOf = (hex: string): string[] =>
    [...(users.get(hex) ?? [])].map((entry) => entry.split('\u0000')[1] ?? entry);
  const breakAll = (hex: string, reason: string): void => {
    for (const entry of users.get(hex) ?? []) {
      const [id = '', label = '', vm] = entry.split('\u0000');
      breakRestorePoint(id, label, vm, reason);
    }
  };

  // Presence: every referenced chunk must be at home or (after a GC raced a backup) in trash.
  const absent = [...users.keys()].filter((hex) => !stored.has(hex));
  await mapConcurrent(absent, concurrency, async (hex) => {
    const location = await repository.chunks.locate(Buffer.from(hex, 'hex'), signal);
    if (location !== undefined) {
      report.chunksInTrash++;
      return;
    }
    report.missingChunks.push({
      chunkId: hex,
      key: chunkKey(hex),
      reason: 'missing',
      restorePoints: labelsOf(hex),
    });
    breakAll(hex, `chunk ${hex} is missing`);
  });

  // Content: re-read, authenticate and re-hash.
  let toCheck = only === undefined ? [...stored.keys()] : [...users.keys()].filter((hex) => stored.has(hex));
  const sample = options.sample;
  if (sample !== undefined && sample > 0 && (sample < 1 ? sample < 1 : sample < toCheck.length)) {
    const count = sample < 1 ? Math.max(1, Math.round(toCheck.length * sample)) : Math.floor(sample);
    for (let i = toCheck.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [toCheck[i], toCheck[j]] = [toCheck[j], toCheck[i]];
    }
    toCheck = toCheck.slice(0, count);
  }
  await mapConcurrent(toCheck, concurrency, async (hex) => {
    signal?.throwIfAborted();
    const id = Buffer.from(hex, 'hex');
    try {
      // chunks.read follows a chunk a concurrent GC moves to trash: only real damage is reported.
      await repository.chunks.read(id, {}, signal);
      report.checkedBytes += stored.get(hex)?.size ?? 0;
    } catch (error) {
      if (!(error instanceof ChunkIntegrityError)) throw error;
      if (error.code === 'CHUNK_DAMAGED') {
        report.damagedChunks.push({
          chunkId: hex,
          key: chunkKey(hex),
          reason: error.reason,
          restorePoints: labelsOf(hex),
        });
        breakAll(hex, `chunk ${hex} is damaged (${error.reason})`);
      } else if (users.has(hex)) {
        report.missingChunks.push({
          chunkId: hex,
          key: chunkKey(hex),
          reason: 'missing',
          restorePoints: labelsOf(hex),
        });
        breakAll(hex, `chunk ${hex} is missing`);
      }
    }
    report.checkedChunks++;
    options.onProgress?.({ checkedChunks: report.checkedChunks, totalChunks: toCheck.length });
  });

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
