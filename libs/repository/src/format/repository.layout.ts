import { randomBytes } from 'node:crypto';

/**
 * Where every object lives on the remote. Chunks fan out over two levels of 256 folders
 * (chunks/ab/cd/<id>): a million chunks leave about 16 objects per folder.
 */
export const CONFIG_KEY = 'repository.json';
export const CHUNKS_PREFIX = 'chunks/';
export const RESTORE_POINTS_PREFIX = 'restore-points/';
export const SESSIONS_PREFIX = 'sessions/';
export const TRASH_PREFIX = 'trash/';
export const TRASH_BATCHES_PREFIX = 'gc/trash-batches/';
export const GC_CLOCK_KEY = 'gc/clock';
export const GC_LEASE = 'repository-gc';
export const MANIFEST_NAME = 'manifest';

const CHUNK_ID_PATTERN = /^[0-9a-f]{64}$/;
const RESTORE_POINT_ID_PATTERN = /^\d{8}T\d{6}\d{3}Z-[0-9a-f]{12}$/;

export function isChunkId(value: string): boolean {
  return CHUNK_ID_PATTERN.test(value);
}

export function chunkKey(chunkId: string): string {
  return `${CHUNKS_PREFIX}${chunkId.slice(0, 2)}/${chunkId.slice(2, 4)}/${chunkId}`;
}

export function trashChunkKey(batchId: string, chunkId: string): string {
  return `${TRASH_PREFIX}${batchId}/${chunkId.slice(0, 2)}/${chunkId.slice(2, 4)}/${chunkId}`;
}

export function trashBatchKey(batchId: string): string {
  return `${TRASH_BATCHES_PREFIX}${batchId}.json`;
}

/** The chunk id at the end of a chunk key (in chunks/ or in trash/), or undefined. */
export function chunkIdOfKey(key: string): string | undefined {
  const last = key.slice(key.lastIndexOf('/') + 1);
  return isChunkId(last) ? last : undefined;
}

/** Sortable by time, unique across writers: 20261126T070000123Z-<12 hex>. */
export function newRestorePointId(now = new Date()): string {
  return `${timeStamp(now)}-${randomBytes(6).toString('hex')}`;
}

export function newBatchId(now = new Date()): string {
  return `${timeStamp(now)}-${randomBytes(4).toString('hex')}`;
}

export function isRestorePointId(value: string): boolean {
  return RESTORE_POINT_ID_PATTERN.test(value);
}

function timeStamp(now: Date): string {
  return now.toISOString().replace(/[-:]/g, '').replace('.', '');
}

export function restorePointPrefix(restorePointId: string): string {
  return `${RESTORE_POINTS_PREFIX}${restorePointId}/`;
}

export function manifestKey(restorePointId: string): string {
  return `${restorePointPrefix(restorePointId)}${MANIFEST_NAME}`;
}

export function diskIndexKey(restorePointId: string, ordinal: number): string {
  return `${restorePointPrefix(restorePointId)}disk-${ordinal}.index`;
}

/** restore-points/<id>/<name> -> id, or undefined for keys of another shape. */
export function restorePointIdOfKey(key: string): string | undefined {
  if (!key.startsWith(RESTORE_POINTS_PREFIX)) return undefined;
  const rest = key.slice(RESTORE_POINTS_PREFIX.length);
  const slash = rest.indexOf('/');
  return slash > 0 ? rest.slice(0, slash) : undefined;
}

export function sessionKey(sessionId: string): string {
  return `${SESSIONS_PREFIX}${sessionId}.json`;
}
