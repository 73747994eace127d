import type { RemoteErrorCode } from '@haven/remote-sdk';

/** nfsstat3 values (RFC 1813 section 2.6). */
export const Nfs3Status = {
  OK: 0,
  PERM: 1,
  NOENT: 2,
  IO: 5,
  NXIO: 6,
  ACCES: 13,
  EXIST: 17,
  XDEV: 18,
  NODEV: 19,
  NOTDIR: 20,
  ISDIR: 21,
  INVAL: 22,
  FBIG: 27,
  NOSPC: 28,
  ROFS: 30,
  MLINK: 31,
  NAMETOOLONG: 63,
  NOTEMPTY: 66,
  DQUOT: 69,
  STALE: 70,
  REMOTE: 71,
  BADHANDLE: 10001,
  NOT_SYNC: 10002,
  BAD_COOKIE: 10003,
  NOTSUPP: 10004,
  TOOSMALL: 10005,
  SERVERFAULT: 10006,
  BADTYPE: 10007,
  JUKEBOX: 10008,
} as const;

export type Nfs3StatusName = keyof typeof Nfs3Status;

const NAMES = new Map<number, Nfs3StatusName>(
  Object.entries(Nfs3Status).map(([name, value]) => [value, name as Nfs3StatusName]),
);

export function nfs3StatusName(status: number): string {
  const name = NAMES.get(status);
  return name ? `NFS3ERR_${name}` : `nfsstat3 ${status}`;
}

/** An NFSv3 procedure answered with a status other than NFS3_OK. */
export class Nfs3Error extends Error {
  override readonly name = 'Nfs3Error';

  constructor(
    readonly status: number,
    readonly procedure: string,
    readonly path: string,
    message?: string,
  ) {
    super(message ?? `NFS ${procedure} of "${path}" failed with ${nfs3StatusName(status)}`);
  }

  get statusName(): string {
    return nfs3StatusName(this.status);
  }
}

/**
 * How an NFS status is classified for the rest of Haven. JUKEBOX means "try later" (file being
 * recalled from tape); IO, SERVERFAULT and STALE handles are worth a retry after re-resolving.
 */
export function remoteErrorCodeForNfsStatus(status: number): RemoteErrorCode {
  switch (status) {
    case Nfs3Status.NOENT:
      return 'NOT_FOUND';
    case Nfs3Status.PERM:
    case Nfs3Status.ACCES:
    case Nfs3Status.ROFS:
      return 'PERMISSION_DENIED';
    case Nfs3Status.NOSPC:
    case Nfs3Status.DQUOT:
    case Nfs3Status.FBIG:
      return 'NO_SPACE';
    case Nfs3Status.JUKEBOX:
    case Nfs3Status.IO:
    case Nfs3Status.SERVERFAULT:
    case Nfs3Status.STALE:
    case Nfs3Status.BADHANDLE:
      return 'TRANSIENT';
    case Nfs3Status.NAMETOOLONG:
    case Nfs3Status.INVAL:
    case Nfs3Status.NOTDIR:
    case Nfs3Status.ISDIR:
      return 'INVALID_ARGUMENT';
    default:
      return 'UNKNOWN';
  }
}
