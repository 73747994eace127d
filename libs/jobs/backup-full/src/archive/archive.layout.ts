import { createHash, randomBytes } from 'node:crypto';
import { ArchiveError } from './archive.errors';

/**
 * Where a full-backup archive lives on a remote, beside the repository's own objects:
 *
 *   archives/<vm uuid>/<archive id>/segment-000000 … segment-NNNNNN   the XVA stream, cut in segments
 *   archives/<vm uuid>/<archive id>/manifest                          written last: the commit
 *
 * The archive id is `<UTC time>-<8 hex of the task>-<4 hex random>`: sortable by time, and a retried
 * task recognises the folders of its own earlier attempts.
 */
export const ARCHIVES_PREFIX = 'archives/';
export const ARCHIVE_MANIFEST_NAME = 'manifest';
/**
 * Segment size of new archives. A segment is held whole while it is sealed and stored: a VM's backup
 * holds two (the one the slowest remote stores, the one being cut) and one sealed copy per encrypted
 * remote, a restore two. 4 MiB since 2026-12-06: 28-45 MiB of Buffers at the peak of a VM's backup
 * or restore, 51-82 with 16 MiB (docs/benchmarks/jobs.md, "backup.full"), for 4x the objects.
 * Readers take each segment's size from the manifest: archives of any segment size stay readable.
 */
export const ARCHIVE_SEGMENT_SIZE = 4 * 1024 * 1024;

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ARCHIVE_ID_PATTERN = /^\d{8}T\d{9}Z-[0-9a-f]{8}-[0-9a-f]{4}$/;
const MANIFEST_KEY_PATTERN = /^archives\/([^/]+)\/([^/]+)\/manifest$/;

export function isArchiveId(value: string): boolean {
  return ARCHIVE_ID_PATTERN.test(value);
}

/** The 8 hex characters that tie an archive folder to the task that writes it. */
export function taskTag(taskId: string): string {
  return createHash('sha256').update(taskId).digest('hex').slice(0, 8);
}

export function newArchiveId(taskId: string, now = new Date()): string {
  const time = now.toISOString().replace(/[-:]/g, '').replace('.', '');
  return `${time}-${taskTag(taskId)}-${randomBytes(2).toString('hex')}`;
}

/** True when the archive id was made for this task. */
export function archiveOfTask(archiveId: string, taskId: string): boolean {
  return isArchiveId(archiveId) && archiveId.split('-')[1] === taskTag(taskId);
}

export function vmArchivesPrefix(vmUuid: string): string {
  if (!UUID_PATTERN.test(vmUuid))
    throw new ArchiveError(
      'INVALID_ARGUMENT',
      `"${vmUuid}" is not a VM UUID: archives are stored per VM UUID`,
    );
  return `${ARCHIVES_PREFIX}${vmUuid}/`;
}

export function archivePrefix(vmUuid: string, archiveId: string): string {
  return `${vmArchivesPrefix(vmUuid)}${archiveId}/`;
}

export function archiveManifestKey(vmUuid: string, archiveId: string): string {
  return `${archivePrefix(vmUuid, archiveId)}${ARCHIVE_MANIFEST_NAME}`;
}

export function segmentKey(vmUuid: string, archiveId: string, index: number): string {
  return `${archivePrefix(vmUuid, archiveId)}segment-${String(index).padStart(6, '0')}`;
}

export interface ArchiveLocation {
  vmUuid: string;
  archiveId: string;
}

/** The VM and archive a manifest key names, or undefined for any other key. */
export function parseArchiveManifestKey(key: string): ArchiveLocation | undefined {
  const match = MANIFEST_KEY_PATTERN.exec(key);
  if (!match) return undefined;
  const [, vmUuid = '', archiveId = ''] = match;
  return UUID_PATTERN.test(vmUuid) && isArchiveId(archiveId) ? { vmUuid, archiveId } : undefined;
}

export function isArchiveManifestKey(key: string): boolean {
  return typeof key === 'string' && parseArchiveManifestKey(key) !== undefined;
}

/** archives/<vm>/<id>/<anything> -> the VM and archive id, or undefined. */
export function archiveOfKey(key: string): ArchiveLocation | undefined {
  if (!key.startsWith(ARCHIVES_PREFIX)) return undefined;
  const parts = key.slice(ARCHIVES_PREFIX.length).split('/');
  const [vmUuid = '', archiveId = ''] = parts;
  if (parts.length < 3 || !UUID_PATTERN.test(vmUuid) || !isArchiveId(archiveId)) return undefined;
  return { vmUuid, archiveId };
}
