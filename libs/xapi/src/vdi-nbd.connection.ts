import { isNbdError, type NbdClient, type NbdErrorCode } from '@haven/nbd';
import { xapiError, type XapiErrorCode } from './xapi.error';

/**
 * What an NBD failure is in XAPI terms, so that callers treat it as they treat an HTTP export's:
 * a cut or refused transfer may be retried (TRANSFER_FAILED, UNREACHABLE), a wrong certificate
 * will not heal (UNKNOWN), an abort is a cancellation. Caller bugs (bad offsets, a closed client)
 * stay NbdErrors.
 */
const XAPI_CODES: Partial<Record<NbdErrorCode, XapiErrorCode>> = {
  NBD_CONNECT_FAILED: 'UNREACHABLE',
  NBD_CONNECTION_LOST: 'TRANSFER_FAILED',
  NBD_READ_ERROR: 'TRANSFER_FAILED',
  NBD_PROTOCOL: 'TRANSFER_FAILED',
  NBD_EXPORT_UNKNOWN: 'TRANSFER_FAILED',
  NBD_HANDSHAKE_REFUSED: 'TRANSFER_FAILED',
  NBD_TLS_FAILED: 'UNKNOWN',
  NBD_ABORTED: 'CANCELLED',
};

/** Turns an NbdError into the XapiError it means for `object` of the pool; anything else as is. */
export function nbdFailure(
  error: unknown,
  context: { poolUrl: string; operation: string; object: string },
): unknown {
  if (!isNbdError(error)) return error;
  const code = XAPI_CODES[error.code];
  if (code === undefined) return error;
  return xapiError(code, { ...context, xapiCode: error.code, cause: error }, error.message);
}

/**
 * An NBD connection to one VDI (from `XapiPool.connectNbd`): reads fail with XapiErrors naming
 * the pool and the VDI, the NbdError as their cause.
 */
export class VdiNbdConnection {
  constructor(
    private readonly client: NbdClient,
    private readonly context: { poolUrl: string; object: string },
  ) {}

  /** The VDI's size in bytes, as the NBD server states it. */
  get size(): number {
    return this.client.size;
  }

  /** `length` bytes at `offset`, into `target` when given; pipelined up to the connection's limit. */
  async read(offset: number, length: number, target?: Buffer): Promise<Buffer> {
    try {
      return await this.client.read(offset, length, target);
    } catch (error) {
      throw nbdFailure(error, { ...this.context, operation: 'NBD read' });
    }
  }

  /** Waits for the reads in flight, then disconnects cleanly (NBD_CMD_DISC). */
  close(): Promise<void> {
    return this.client.close();
  }

  /** Drops the connection; reads in flight fail. */
  destroy(reason?: unknown): void {
    this.client.destroy(reason);
  }
}
