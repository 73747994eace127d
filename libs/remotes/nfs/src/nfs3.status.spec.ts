import { MountError } from './mount.client';
import { classifyNfsError } from './nfs-userspace.driver';
import { Nfs3Error, Nfs3Status, nfs3StatusName, remoteErrorCodeForNfsStatus } from './nfs3.status';
import { RpcError } from './rpc.errors';

describe('NFS error classification', () => {
  it.each([
    [Nfs3Status.NOENT, 'NOT_FOUND'],
    [Nfs3Status.ACCES, 'PERMISSION_DENIED'],
    [Nfs3Status.PERM, 'PERMISSION_DENIED'],
    [Nfs3Status.ROFS, 'PERMISSION_DENIED'],
    [Nfs3Status.NOSPC, 'NO_SPACE'],
    [Nfs3Status.DQUOT, 'NO_SPACE'],
    [Nfs3Status.JUKEBOX, 'TRANSIENT'],
    [Nfs3Status.IO, 'TRANSIENT'],
    [Nfs3Status.STALE, 'TRANSIENT'],
    [Nfs3Status.SERVERFAULT, 'TRANSIENT'],
    [Nfs3Status.NAMETOOLONG, 'INVALID_ARGUMENT'],
    [Nfs3Status.EXIST, 'UNKNOWN'],
  ])('maps nfsstat3 %i to %s', (status, code) => {
    expect(remoteErrorCodeForNfsStatus(status)).toBe(code);
    expect(classifyNfsError(new Nfs3Error(status, 'WRITE', 'a/b'))?.code).toBe(code);
  });

  it('names the procedure, the path and the status in the message', () => {
    expect(new Nfs3Error(Nfs3Status.NOSPC, 'WRITE', 'chunks/ab/cd').message).toBe(
      'NFS WRITE of "chunks/ab/cd" failed with NFS3ERR_NOSPC',
    );
    expect(nfs3StatusName(12345)).toBe('nfsstat3 12345');
  });

  it('classifies RPC and MOUNT failures', () => {
    expect(classifyNfsError(new RpcError('RPC_TIMEOUT', 'x'))?.code).toBe('TRANSIENT');
    expect(classifyNfsError(new RpcError('RPC_CONNECTION_LOST', 'x'))?.code).toBe('TRANSIENT');
    expect(classifyNfsError(new RpcError('RPC_AUTH_ERROR', 'x'))?.code).toBe('AUTH_FAILED');
    expect(classifyNfsError(new RpcError('RPC_ABORTED', 'x'))?.code).toBe('ABORTED');
    expect(classifyNfsError(new RpcError('RPC_GARBAGE_ARGS', 'x'))?.code).toBe('UNKNOWN');
    expect(classifyNfsError(new MountError(13, '/srv', 'x'))?.code).toBe('PERMISSION_DENIED');
    expect(classifyNfsError(new MountError(2, '/srv', 'x'))?.code).toBe('INVALID_ARGUMENT');
    expect(classifyNfsError(new Error('other'))).toBeUndefined();
  });
});
