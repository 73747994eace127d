export type ArchiveErrorCode =
  | 'ARCHIVE_NOT_FOUND'
  | 'MANIFEST_DAMAGED'
  | 'SEGMENT_DAMAGED'
  | 'SEGMENT_MISSING'
  | 'ARCHIVE_DAMAGED'
  | 'ARCHIVE_DISK_NOT_FOUND'
  | 'INVALID_ARGUMENT';

/** A full-backup archive that cannot be read or written; `key` names the object at fault. */
export class ArchiveError extends Error {
  override readonly name = 'ArchiveError';

  constructor(
    readonly code: ArchiveErrorCode,
    message: string,
    readonly key?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** Damaged, missing or malformed data stays so: another attempt of the task cannot fix it. */
  readonly permanent = true;
}
