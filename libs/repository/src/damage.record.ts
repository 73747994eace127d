import { isRemoteError } from '@haven/remote-sdk';
import type { Repository } from './repository';
import { RepositoryError } from './repository.errors';

/** Where a verify leaves what it found broken, for backups to read (plain JSON: ids only). */
export const DAMAGE_KEY = 'damage.json';

export interface DamageRecord {
  format: 'haven-damage';
  version: 1;
  updatedAt: string;
  /** Ids of restore points a missing or damaged chunk (or index) breaks. */
  restorePoints: string[];
  /** Hex ids of chunks found missing or damaged. */
  chunks: string[];
}

export interface DamageFindings {
  restorePoints: readonly string[];
  chunks: readonly string[];
  /**
   * True when every restore point and chunk was checked: the findings replace the record (an
   * empty one removes it). Otherwise they are added to what is recorded.
   */
  complete: boolean;
}

/** The damage recorded by verifies of this repository; empty when none. */
export async function readDamageRecord(repository: Repository, signal?: AbortSignal): Promise<DamageRecord> {
  let object: Buffer;
  try {
    object = await repository.store.getBuffer(DAMAGE_KEY, signal !== undefined ? { signal } : {});
  } catch (error) {
    if (isRemoteError(error, 'NOT_FOUND')) return emptyRecord();
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(object.toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const record = parsed as Partial<DamageRecord> | undefined;
  if (
    record?.format !== 'haven-damage' ||
    !Array.isArray(record.restorePoints) ||
    !Array.isArray(record.chunks) ||
    !record.restorePoints.every((id) => typeof id === 'string') ||
    !record.chunks.every((id) => typeof id === 'string')
  ) {
    throw new RepositoryError(
      'INVALID_ARGUMENT',
      `${DAMAGE_KEY} on remote ${repository.store.name} is not a damage record; delete it and verify the repository again`,
      { remote: repository.store.name, key: DAMAGE_KEY },
    );
  }
  return record as DamageRecord;
}

/** Stores what a verify found (see DamageFindings.complete). */
export async function recordDamage(
  repository: Repository,
  findings: DamageFindings,
  signal?: AbortSignal,
): Promise<void> {
  const options = signal !== undefined ? { signal } : {};
  const previous = findings.complete ? emptyRecord() : await readDamageRecord(repository, signal);
  const restorePoints = [...new Set([...previous.restorePoints, ...findings.restorePoints])].sort();
  const chunks = [...new Set([...previous.chunks, ...findings.chunks])].sort();
  if (restorePoints.length === 0 && chunks.length === 0) {
    if (findings.complete) await repository.store.delete(DAMAGE_KEY, options);
    return;
  }
  const record: DamageRecord = {
    format: 'haven-damage',
    version: 1,
    updatedAt: new Date().toISOString(),
    restorePoints,
    chunks,
  };
  await repository.store.put(DAMAGE_KEY, Buffer.from(`${JSON.stringify(record, null, 2)}\n`), options);
}

function emptyRecord(): DamageRecord {
  return { format: 'haven-damage', version: 1, updatedAt: '', restorePoints: [], chunks: [] };
}
