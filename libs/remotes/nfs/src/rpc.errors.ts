/** Why an ONC RPC call failed below the NFS layer. `transient` ones are worth a retry. */
export type RpcErrorCode =
  | 'RPC_CONNECT_FAILED'
  | 'RPC_CONNECTION_LOST'
  | 'RPC_TIMEOUT'
  | 'RPC_ABORTED'
  | 'RPC_AUTH_ERROR'
  | 'RPC_PROGRAM_UNAVAILABLE'
  | 'RPC_PROCEDURE_UNAVAILABLE'
  | 'RPC_GARBAGE_ARGS'
  | 'RPC_SYSTEM_ERROR'
  | 'RPC_PROTOCOL_ERROR';

const TRANSIENT: ReadonlySet<RpcErrorCode> = new Set<RpcErrorCode>([
  'RPC_CONNECT_FAILED',
  'RPC_CONNECTION_LOST',
  'RPC_TIMEOUT',
  'RPC_SYSTEM_ERROR',
]);

export class RpcError extends Error {
  override readonly name = 'RpcError';

  constructor(
    readonly code: RpcErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  get transient(): boolean {
    return TRANSIENT.has(this.code);
  }
}
