import { RpcError } from './rpc.errors';
import { RpcConnection } from './rpc.transport';
import { XdrWriter } from './xdr.codec';

export const PORTMAP_PROGRAM = 100000;
export const PORTMAP_PORT = 111;
const PMAPPROC_GETPORT = 3;
const IPPROTO_TCP = 6;

/** Asks the portmapper (rpcbind, version 2) on which TCP port `program`/`version` listens. */
export async function lookupRpcPort(
  host: string,
  program: number,
  version: number,
  options: { port?: number; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<number> {
  const connection = new RpcConnection({
    host,
    port: options.port ?? PORTMAP_PORT,
    credentials: null,
    timeoutMs: options.timeoutMs ?? 10_000,
    connectTimeoutMs: options.timeoutMs ?? 10_000,
  });
  try {
    const args = new XdrWriter().uint32(program).uint32(version).uint32(IPPROTO_TCP).uint32(0);
    const reply = await connection.call(PORTMAP_PROGRAM, 2, PMAPPROC_GETPORT, args, options.signal);
    const port = reply.uint32();
    if (port === 0) {
      throw new RpcError(
        'RPC_PROGRAM_UNAVAILABLE',
        `the portmapper on ${host} has no TCP registration for program ${program} version ${version}; is the NFS server running, or give the port in the remote's settings`,
      );
    }
    return port;
  } finally {
    await connection.close();
  }
}
