import { classifySmbError } from './smb.driver';
import {
  NtStatus,
  Smb2ConnectionError,
  Smb2Error,
  ntStatusName,
  remoteErrorCodeForNtStatus,
} from './smb2.status';

describe('SMB error classification', () => {
  it.each([
    [NtStatus.OBJECT_NAME_NOT_FOUND, 'NOT_FOUND'],
    [NtStatus.OBJECT_PATH_NOT_FOUND, 'NOT_FOUND'],
    [NtStatus.LOGON_FAILURE, 'AUTH_FAILED'],
    [NtStatus.WRONG_PASSWORD, 'AUTH_FAILED'],
    [NtStatus.ACCOUNT_DISABLED, 'AUTH_FAILED'],
    [NtStatus.ACCESS_DENIED, 'PERMISSION_DENIED'],
    [NtStatus.DISK_FULL, 'NO_SPACE'],
    [NtStatus.QUOTA_EXCEEDED, 'NO_SPACE'],
    [NtStatus.NETWORK_NAME_DELETED, 'TRANSIENT'],
    [NtStatus.USER_SESSION_DELETED, 'TRANSIENT'],
    [NtStatus.SHARING_VIOLATION, 'TRANSIENT'],
    [NtStatus.BAD_NETWORK_NAME, 'INVALID_ARGUMENT'],
    [NtStatus.OBJECT_NAME_COLLISION, 'UNKNOWN'],
  ])('maps NTSTATUS 0x%s to %s', (status, code) => {
    expect(remoteErrorCodeForNtStatus(status)).toBe(code);
    expect(classifySmbError(new Smb2Error(status, 'CREATE', 'a/b'))?.code).toBe(code);
  });

  it('names the command, the path and the status, with advice for credentials and shares', () => {
    expect(new Smb2Error(NtStatus.DISK_FULL, 'WRITE', 'chunks/ab').message).toBe(
      'SMB2 WRITE of "chunks/ab" failed with STATUS_DISK_FULL',
    );
    expect(ntStatusName(0xc0001234)).toBe('NTSTATUS 0xc0001234');
    expect(classifySmbError(new Smb2Error(NtStatus.LOGON_FAILURE, 'SESSION_SETUP', ''))?.reason).toMatch(
      /password or domain rejected/,
    );
    expect(
      classifySmbError(new Smb2Error(NtStatus.BAD_NETWORK_NAME, 'TREE_CONNECT', '\\\\h\\s'))?.reason,
    ).toMatch(/no such share/);
  });

  it('classifies connection failures as TRANSIENT and an abort as ABORTED', () => {
    expect(classifySmbError(new Smb2ConnectionError('SMB_CONNECTION_LOST', 'x'))?.code).toBe('TRANSIENT');
    expect(classifySmbError(new Smb2ConnectionError('SMB_TIMEOUT', 'x'))?.code).toBe('TRANSIENT');
    expect(classifySmbError(new Smb2ConnectionError('SMB_ABORTED', 'x'))?.code).toBe('ABORTED');
    expect(classifySmbError(new Error('other'))).toBeUndefined();
  });
});
