/** Stable codes every remote error is classified into. */
export type RemoteErrorCode =
  | 'NOT_FOUND'
  | 'AUTH_FAILED'
  | 'PERMISSION_DENIED'
  | 'NO_SPACE'
  | 'TRANSIENT'
  | 'LOCKED'
  | 'INVALID_ARGUMENT'
  | 'ABORTED'
  | 'UNKNOWN';

/**
 * A failure of a remote operation. The message names the remote and the object, says what to do
 * where that is known, and never contains a credential.
 */
export class RemoteError extends Error {
  override readonly name = 'RemoteError';

  constructor(
    readonly code: RemoteErrorCode,
    readonly remote: string,
    message: string,
    readonly key?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get retryable(): boolean {
    return this.code === 'TRANSIENT';
  }
}

export function isRemoteError(error: unknown, code?: RemoteErrorCode): error is RemoteError {
  return error instanceof RemoteError && (code === undefined || error.code === code);
}

/**
 * Thrown by drivers for a failure they have already classified. The `Remote` base class turns it
 * into a RemoteError naming the remote, the operation and the key.
 */
export class DriverError extends Error {
  override readonly name = 'DriverError';

  constructor(
    readonly code: RemoteErrorCode,
    /** What went wrong, in words; no secrets, no remote name (the base class adds it). */
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(reason, options);
  }
}

/** A driver's verdict on a native error (an SDK error, an errno). */
export interface ErrorClassification {
  code: RemoteErrorCode;
  reason: string;
}

/** What an operator should do, per code; appended to every RemoteError message. */
export const REMOTE_ERROR_ADVICE: Record<RemoteErrorCode, string> = {
  NOT_FOUND: 'The object does not exist on the remote.',
  AUTH_FAILED: "Check the remote's credentials (key, secret, password, connection string).",
  PERMISSION_DENIED: 'Grant Haven read, write and delete access to this location on the remote.',
  NO_SPACE: 'Free space on the remote or enlarge it.',
  TRANSIENT: 'Check that the remote is reachable; Haven retries such failures by itself.',
  LOCKED: 'Another process holds the lease; wait for it to finish or for the lease to expire.',
  INVALID_ARGUMENT:
    "Fix the remote's settings if they are what is named; otherwise this is a bug in the caller: report it with this message.",
  ABORTED: 'The operation was cancelled.',
  UNKNOWN: 'See the cause in the logs; report it if it persists.',
};

const ERRNO_CODES: Partial<Record<string, RemoteErrorCode>> = {
  ENOENT: 'NOT_FOUND',
  ENOTDIR: 'NOT_FOUND',
  EACCES: 'PERMISSION_DENIED',
  EPERM: 'PERMISSION_DENIED',
  EROFS: 'PERMISSION_DENIED',
  ENOSPC: 'NO_SPACE',
  EDQUOT: 'NO_SPACE',
  EFBIG: 'NO_SPACE',
  EIO: 'TRANSIENT',
  EAGAIN: 'TRANSIENT',
  EBUSY: 'TRANSIENT',
  ESTALE: 'TRANSIENT',
  EINTR: 'TRANSIENT',
  ETIMEDOUT: 'TRANSIENT',
  ECONNREFUSED: 'TRANSIENT',
  ECONNRESET: 'TRANSIENT',
  ECONNABORTED: 'TRANSIENT',
  EPIPE: 'TRANSIENT',
  EHOSTUNREACH: 'TRANSIENT',
  ENETUNREACH: 'TRANSIENT',
  ENETDOWN: 'TRANSIENT',
  EAI_AGAIN: 'TRANSIENT',
  ENOTFOUND: 'TRANSIENT',
  UND_ERR_SOCKET: 'TRANSIENT',
  UND_ERR_CONNECT_TIMEOUT: 'TRANSIENT',
  ERR_STREAM_PREMATURE_CLOSE: 'TRANSIENT',
};

/** Classifies Node system errors (errno codes), the common ground of every driver. */
export function classifyErrno(error: unknown): ErrorClassification | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const errno = (error as { code?: unknown }).code;
  if (typeof errno !== 'string') return undefined;
  const code = ERRNO_CODES[errno];
  if (code === undefined) return undefined;
  const syscall = (error as { syscall?: unknown }).syscall;
  return { code, reason: typeof syscall === 'string' ? `${errno} on ${syscall}` : errno };
}
