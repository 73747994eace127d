/** Stable codes of every failure the repository reports. */
export type RepositoryErrorCode =
  | 'NOT_INITIALIZED'
  | 'REPOSITORY_MISSING'
  | 'REPOSITORY_REPLACED'
  | 'ALREADY_INITIALIZED'
  | 'UNSUPPORTED_FORMAT'
  | 'CONFIG_DAMAGED'
  | 'KEY_REQUIRED'
  | 'KEY_NOT_EXPECTED'
  | 'WRONG_KEY'
  | 'CHUNK_MISSING'
  | 'CHUNK_DAMAGED'
  | 'INDEX_DAMAGED'
  | 'MANIFEST_DAMAGED'
  | 'RESTORE_POINT_NOT_FOUND'
  | 'DISK_NOT_FOUND'
  | 'INVALID_BLOCK'
  | 'INVALID_ARGUMENT'
  | 'SESSION_EXPIRED'
  | 'WRITER_CLOSED'
  | 'ABORTED';

/**
 * A repository failure. The message says what failed, on which object, and what to do; `context`
 * carries the same names for programs (chunk id, restore point, disk, block).
 */
export class RepositoryError extends Error {
  override readonly name: string = 'RepositoryError';

  constructor(
    readonly code: RepositoryErrorCode,
    message: string,
    readonly context: RepositoryErrorContext = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /**
   * Another attempt of the task cannot help (the worker records the failure at once): the remote's
   * storage holds no repository or another one than the catalog's, or the key does not fit. The
   * operator must act; the next scheduled run tries again.
   */
  get permanent(): boolean {
    return PERMANENT_CODES.has(this.code);
  }
}

const PERMANENT_CODES = new Set<RepositoryErrorCode>([
  'REPOSITORY_MISSING',
  'REPOSITORY_REPLACED',
  'UNSUPPORTED_FORMAT',
  'KEY_REQUIRED',
  'KEY_NOT_EXPECTED',
  'WRONG_KEY',
]);

export interface RepositoryErrorContext {
  remote?: string;
  key?: string;
  chunkId?: string;
  restorePoint?: string;
  disk?: string;
  block?: number;
}

/** A chunk is absent or does not decode to the bytes its id names: restores using it must fail. */
export class ChunkIntegrityError extends RepositoryError {
  override readonly name = 'ChunkIntegrityError';

  constructor(
    code: 'CHUNK_MISSING' | 'CHUNK_DAMAGED',
    readonly chunkId: string,
    readonly reason: string,
    context: RepositoryErrorContext,
    options?: { cause?: unknown },
  ) {
    const where = [
      context.restorePoint !== undefined ? `restore point ${context.restorePoint}` : undefined,
      context.disk !== undefined ? `disk ${context.disk}` : undefined,
      context.block !== undefined ? `block ${context.block}` : undefined,
    ]
      .filter((part) => part !== undefined)
      .join(', ');
    super(
      code,
      `chunk ${chunkId}${context.remote !== undefined ? ` on remote ${context.remote}` : ''} ` +
        `${code === 'CHUNK_MISSING' ? 'is missing' : 'is damaged'} (${reason})` +
        `${where !== '' ? `; needed by ${where}` : ''}. ` +
        'Run verify to list every affected restore point; restore from a mirror or run a new full backup.',
      { ...context, chunkId },
      options,
    );
  }
}

export function isRepositoryError(error: unknown, code?: RepositoryErrorCode): error is RepositoryError {
  return error instanceof RepositoryError && (code === undefined || error.code === code);
}
