import { RpcError } from './rpc.errors';
import { RpcConnection, type RpcCredentials } from './rpc.transport';
import { XdrWriter } from './xdr.codec';

export const MOUNT_PROGRAM = 100005;
export const MOUNT_VERSION = 3;
const MOUNTPROC3_MNT = 1;
const MOUNTPROC3_UMNT = 3;

/** mountstat3 values (RFC 1813 section 5.1.5), a subset of the NFS statuses. */
export class MountError extends Error {
  override readonly name = 'MountError';
  constructor(
    readonly status: number,
    readonly exportPath: string,
    message: string,
  ) {
    super(message);
  }
}

const MOUNT_STATUS_TEXT: Record<number, string> = {
  1: 'MNT3ERR_PERM (this client or uid may not mount the export)',
  2: 'MNT3ERR_NOENT (no such export path: check the export list of the server)',
  5: 'MNT3ERR_IO',
  13: 'MNT3ERR_ACCES (the export does not allow this client)',
  20: 'MNT3ERR_NOTDIR',
  22: 'MNT3ERR_INVAL',
  63: 'MNT3ERR_NAMETOOLONG',
  10004: 'MNT3ERR_NOTSUPP',
  10006: 'MNT3ERR_SERVERFAULT',
};

/** MOUNT v3 client: MNT returns the export's root file handle; UMNT tells the server we left. */
export class MountClient {
  private readonly connection: RpcConnection;

  constructor(host: string, port: number, credentials: RpcCredentials, timeoutMs = 15_000) {
    this.connection = new RpcConnection({ host, port, credentials, timeoutMs, connectTimeoutMs: timeoutMs });
  }

  async mount(exportPath: string, signal?: AbortSignal): Promise<Buffer> {
    const reply = await this.connection.call(
      MOUNT_PROGRAM,
      MOUNT_VERSION,
      MOUNTPROC3_MNT,
      new XdrWriter().string(exportPath),
      signal,
    );
    const status = reply.uint32();
    if (status !== 0) {
      throw new MountError(
        status,
        exportPath,
        `mounting export "${exportPath}" failed: ${MOUNT_STATUS_TEXT[status] ?? `mountstat3 ${status}`}`,
      );
    }
    const handle = Buffer.from(reply.opaque(64));
    const flavors = reply.uint32();
    const accepted: number[] = [];
    for (let index = 0; index < flavors; index++) accepted.push(reply.uint32());
    // AUTH_SYS is flavour 1; an export that lists flavours without it would refuse every call.
    if (accepted.length > 0 && !accepted.includes(1)) {
      throw new RpcError(
        'RPC_AUTH_ERROR',
        `export "${exportPath}" accepts only security flavours ${accepted.join(', ')}, not AUTH_SYS (1); set SecType = sys on the export`,
      );
    }
    return handle;
  }

  async unmount(exportPath: string): Promise<void> {
    await this.connection.call(
      MOUNT_PROGRAM,
      MOUNT_VERSION,
      MOUNTPROC3_UMNT,
      new XdrWriter().string(exportPath),
    );
  }

  close(): Promise<void> {
    return this.connection.close();
  }
}
