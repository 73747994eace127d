export type BackupJobErrorCode =
  | 'INVALID_SELECTION'
  | 'NO_POOL'
  | 'POOLS_FAILED'
  | 'VM_NOT_FOUND'
  | 'NO_DISKS'
  | 'DISK_MISMATCH'
  | 'CBT_BITMAP'
  | 'VM_TIMEOUT';

/** A failure of the backup job itself (XAPI and repository failures keep their own classes). */
export class BackupJobError extends Error {
  readonly code: BackupJobErrorCode;

  constructor(code: BackupJobErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BackupJobError';
    this.code = code;
  }
}

/**
 * A VM's backup stopped because it passed the job's `vmTimeoutSeconds`. Permanent: the queue does
 * not try the VM again in this run (Xen Orchestra's timeout is not retried either).
 */
export class VmBackupTimeoutError extends BackupJobError {
  readonly permanent = true;

  constructor(what: string, seconds: number) {
    super(
      'VM_TIMEOUT',
      `${what} stopped: it passed the job's timeout of ${seconds} s (settings.vmTimeoutSeconds); ` +
        'raise the timeout or look at why the export is slow',
    );
    this.name = 'VmBackupTimeoutError';
  }
}
