import type { RemoteErrorCode } from '@haven/remote-sdk';

/** NTSTATUS values the SMB client meets (MS-ERREF 2.3). */
export const NtStatus = {
  SUCCESS: 0x00000000,
  PENDING: 0x00000103,
  NO_MORE_FILES: 0x80000006,
  MORE_PROCESSING_REQUIRED: 0xc0000016,
  INVALID_PARAMETER: 0xc000000d,
  NO_SUCH_FILE: 0xc000000f,
  END_OF_FILE: 0xc0000011,
  ACCESS_DENIED: 0xc0000022,
  OBJECT_NAME_INVALID: 0xc0000033,
  OBJECT_NAME_NOT_FOUND: 0xc0000034,
  OBJECT_NAME_COLLISION: 0xc0000035,
  OBJECT_PATH_NOT_FOUND: 0xc000003a,
  SHARING_VIOLATION: 0xc0000043,
  DELETE_PENDING: 0xc0000056,
  WRONG_PASSWORD: 0xc000006a,
  LOGON_FAILURE: 0xc000006d,
  ACCOUNT_RESTRICTION: 0xc000006e,
  PASSWORD_EXPIRED: 0xc0000071,
  ACCOUNT_DISABLED: 0xc0000072,
  DISK_FULL: 0xc000007f,
  INSUFFICIENT_RESOURCES: 0xc000009a,
  FILE_IS_A_DIRECTORY: 0xc00000ba,
  NOT_SUPPORTED: 0xc00000bb,
  NETWORK_NAME_DELETED: 0xc00000c9,
  BAD_NETWORK_NAME: 0xc00000cc,
  NOT_A_DIRECTORY: 0xc0000103,
  CANCELLED: 0xc0000120,
  FILE_CLOSED: 0xc0000128,
  USER_SESSION_DELETED: 0xc0000203,
  NETWORK_SESSION_EXPIRED: 0xc000035c,
  QUOTA_EXCEEDED: 0xc0000044,
  DIRECTORY_NOT_EMPTY: 0xc0000101,
  IO_TIMEOUT: 0xc00000b5,
  ACCOUNT_LOCKED_OUT: 0xc0000234,
  NETWORK_ACCESS_DENIED: 0xc00000ca,
  FILE_NOT_AVAILABLE: 0xc0000467,
  INSUFF_SERVER_RESOURCES: 0xc0000205,
  REQUEST_NOT_ACCEPTED: 0xc00000d0,
} as const;

const NAMES = new Map<number, string>(Object.entries(NtStatus).map(([name, value]) => [value, name]));

export function ntStatusName(status: number): string {
  const name = NAMES.get(status);
  return name ? `STATUS_${name}` : `NTSTATUS 0x${status.toString(16).padStart(8, '0')}`;
}

/** An SMB2 request answered with an error status. */
export class Smb2Error extends Error {
  override readonly name = 'Smb2Error';

  constructor(
    readonly status: number,
    readonly command: string,
    readonly path: string,
    message?: string,
  ) {
    super(message ?? `SMB2 ${command}${path ? ` of "${path}"` : ''} failed with ${ntStatusName(status)}`);
  }

  get statusName(): string {
    return ntStatusName(this.status);
  }
}

/** A connection-level failure (socket lost, timeout, malformed reply): always worth a retry. */
export class Smb2ConnectionError extends Error {
  override readonly name = 'Smb2ConnectionError';

  constructor(
    readonly code:
      | 'SMB_CONNECT_FAILED'
      | 'SMB_CONNECTION_LOST'
      | 'SMB_TIMEOUT'
      | 'SMB_PROTOCOL_ERROR'
      | 'SMB_ABORTED',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function remoteErrorCodeForNtStatus(value: number): RemoteErrorCode {
  switch (value) {
    case NtStatus.NO_SUCH_FILE:
    case NtStatus.OBJECT_NAME_NOT_FOUND:
    case NtStatus.OBJECT_PATH_NOT_FOUND:
    case NtStatus.DELETE_PENDING:
    case NtStatus.END_OF_FILE:
      return 'NOT_FOUND';
    case NtStatus.LOGON_FAILURE:
    case NtStatus.WRONG_PASSWORD:
    case NtStatus.ACCOUNT_RESTRICTION:
    case NtStatus.PASSWORD_EXPIRED:
    case NtStatus.ACCOUNT_DISABLED:
    case NtStatus.ACCOUNT_LOCKED_OUT:
      return 'AUTH_FAILED';
    case NtStatus.ACCESS_DENIED:
    case NtStatus.NETWORK_ACCESS_DENIED:
      return 'PERMISSION_DENIED';
    case NtStatus.DISK_FULL:
    case NtStatus.QUOTA_EXCEEDED:
      return 'NO_SPACE';
    case NtStatus.SHARING_VIOLATION:
    case NtStatus.INSUFFICIENT_RESOURCES:
    case NtStatus.INSUFF_SERVER_RESOURCES:
    case NtStatus.NETWORK_NAME_DELETED:
    case NtStatus.USER_SESSION_DELETED:
    case NtStatus.NETWORK_SESSION_EXPIRED:
    case NtStatus.FILE_CLOSED:
    case NtStatus.IO_TIMEOUT:
    case NtStatus.REQUEST_NOT_ACCEPTED:
    case NtStatus.FILE_NOT_AVAILABLE:
      return 'TRANSIENT';
    case NtStatus.CANCELLED:
      return 'ABORTED';
    case NtStatus.OBJECT_NAME_INVALID:
    case NtStatus.INVALID_PARAMETER:
    case NtStatus.FILE_IS_A_DIRECTORY:
    case NtStatus.NOT_A_DIRECTORY:
    case NtStatus.BAD_NETWORK_NAME:
      return 'INVALID_ARGUMENT';
    default:
      return 'UNKNOWN';
  }
}
