export type BackupFullErrorCode = 'INVALID_SELECTION' | 'EMPTY_EXPORT';

/** A failure of the full backup job itself (XAPI, repository and archive failures keep their own classes). */
export class BackupFullError extends Error {
  override readonly name = 'BackupFullError';

  constructor(
    readonly code: BackupFullErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
