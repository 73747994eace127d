/** Stable codes for what can go wrong talking NBD; callers switch on them. */
export type NbdErrorCode =
  /** The TCP (or TLS) connection could not be opened. */
  | 'NBD_CONNECT_FAILED'
  /** The server is not a fixed-newstyle NBD server, or refused the negotiation. */
  | 'NBD_HANDSHAKE_REFUSED'
  /** The server does not serve this export name (or refused it: expired session, unknown disk). */
  | 'NBD_EXPORT_UNKNOWN'
  /** TLS was required by one side and refused by the other, or its handshake failed. */
  | 'NBD_TLS_FAILED'
  /** The server answered a read with an error (`errno` holds its value). */
  | 'NBD_READ_ERROR'
  /** The connection ended while reads were in flight, or during the handshake. */
  | 'NBD_CONNECTION_LOST'
  /** The server sent something the protocol does not allow. */
  | 'NBD_PROTOCOL'
  /** The caller's abort signal fired. */
  | 'NBD_ABORTED'
  /** A read out of the export's bounds, or too long. */
  | 'NBD_BAD_REQUEST'
  /** A read on a client already closed. */
  | 'NBD_CLOSED';

export interface NbdErrorContext {
  /** `host:port` of the server. */
  endpoint: string;
  /** The export name without its query (XAPI's carries the session id, a secret). */
  exportName: string;
  /** The server's error value for NBD_READ_ERROR. */
  errno?: number;
  cause?: unknown;
}

/** A failure of an NBD connection; the message names the server, the export and what to do. */
export class NbdError extends Error {
  override readonly name = 'NbdError';
  readonly endpoint: string;
  readonly exportName: string;
  readonly errno: number | undefined;

  constructor(
    readonly code: NbdErrorCode,
    message: string,
    context: NbdErrorContext,
  ) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.endpoint = context.endpoint;
    this.exportName = context.exportName;
    this.errno = context.errno;
  }
}

export function isNbdError(error: unknown, code?: NbdErrorCode): error is NbdError {
  return error instanceof NbdError && (code === undefined || error.code === code);
}

/**
 * An export name safe to show: XAPI's are `/<vdi-uuid>?session_id=<ref>`, and the session is a
 * credential, so the query is cut off.
 */
export function redactExportName(name: string): string {
  const query = name.indexOf('?');
  return query === -1 ? name : `${name.slice(0, query)}?…`;
}
