export type BackupJobErrorCode =
  | 'INVALID_SELECTION'
  | 'VM_NOT_FOUND'
  | 'NO_DISKS'
  | 'DISK_MISMATCH'
  | 'CBT_BITMAP';

/** A failure of the backup job itself (XAPI and repository failures keep their own classes). */
export class BackupJobError extends Error {
  readonly code: BackupJobErrorCode;

  constructor(code: BackupJobErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BackupJobError';
    this.code = code;
  }
}
