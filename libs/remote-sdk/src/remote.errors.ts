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
