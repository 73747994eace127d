import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { NbdError, redactExportName, type NbdErrorCode } from './nbd.error';
import {
  NBD_CMD_DISC,
  NBD_CMD_READ,
  NBD_ESHUTDOWN,
  NBD_MAX_READ_LENGTH,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  nbdErrnoName,
} from './nbd.protocol';
import { SocketByteReader } from './socket-byte.reader';
import { NbdHandshake } from './nbd-client.handshake';

export interface NbdTlsOptions {
  /**
   * The server's certificate (PEM), XAPI's `get_nbd_info` `cert`: pinned, the server must present
   * exactly this one.
   */
  cert: string;
  /** The name the certificate must be issued for (`subject` of `get_nbd_info`); default the host. */
  servername?: string;
}

export interface NbdConnectOptions {
  host: string;
  port: number;
  /** XAPI's: `/<vdi-uuid>?session_id=<session ref>`. */
  exportName: string;
  /** Upgrade with NBD_OPT_STARTTLS before anything else; refused TLS is then an error. */
  tls?: NbdTlsOptions;
  /** Reads sent before their replies arrive (pipelining); more wait for a slot. Default 8. */
  maxInFlight?: number;
  /** Ends the connection: the handshake and every read in flight fail with NBD_ABORTED. */
  signal?: AbortSignal;
}

interface InFlightRead {
  offset: number;
  target: Buffer;
  resolve: (data: Buffer) => void;
  reject: (error: NbdError) => void;
}

/**
 * A client of one NBD export: fixed newstyle negotiation with NBD_OPT_GO, or NBD_OPT_EXPORT_NAME
 * on a server without it (after NBD_OPT_STARTTLS when asked), then reads pipelined over the one
 * connection with simple replies, matched to their requests by handle whatever order the server
 * answers in.
 */
export class NbdClient {
  private readonly inFlight = new Map<bigint, InFlightRead>();
  private readonly slotWaiters: (() => void)[] = [];
  /** Woken when no read is in flight any more (close waits for them). */
  private idleWaiters: (() => void)[] = [];
  private nextHandle = 1n;
  private failure: NbdError | undefined;
  private closing: Promise<void> | undefined;
  private readonly endpoint: string;
  private readonly safeName: string;
  private readonly maxInFlight: number;
  private readonly onAbort = (): void => {
    this.fail(this.error('NBD_ABORTED', 'the read was cancelled', this.options.signal?.reason));
  };

  private constructor(
    private readonly options: NbdConnectOptions,
    private readonly socket: Socket | TLSSocket,
    private readonly reader: SocketByteReader,
    /** Export size in bytes. */
    readonly size: number,
    /** Transmission flags the server announced (NBD_FLAG_READ_ONLY…). */
    readonly flags: number,
  ) {
    this.endpoint = `${options.host}:${options.port}`;
    this.safeName = redactExportName(options.exportName);
    this.maxInFlight = options.maxInFlight ?? 8;
    options.signal?.addEventListener('abort', this.onAbort, { once: true });
    socket.on('error', () => undefined);
    void this.receiveReplies();
  }

  /** Connects and negotiates; the export is ready to read when this resolves. */
  static async connect(options: NbdConnectOptions): Promise<NbdClient> {
    const maxInFlight = options.maxInFlight ?? 8;
    if (!Number.isSafeInteger(maxInFlight) || maxInFlight < 1) {
      throw new RangeError(`maxInFlight must be a positive integer, got ${maxInFlight}`);
    }
    const handshake = new NbdHandshake(options);
    const { socket, reader, size, flags } = await handshake.run();
    return new NbdClient(options, socket, reader, size, flags);
  }

  /** Reads in flight (sent, reply not complete). */
  get pending(): number {
    return this.inFlight.size;
  }

  /**
   * `length` bytes at `offset`, into `target` when given (its first `length` bytes), else a fresh
   * buffer. Resolves with the filled buffer. Waits for a slot when `maxInFlight` reads are out.
   */
  async read(offset: number, length: number, target?: Buffer): Promise<Buffer> {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length <= 0 ||
      offset + length > this.size ||
      length > NBD_MAX_READ_LENGTH ||
      (target !== undefined && target.length < length)
    ) {
      throw this.error(
        'NBD_BAD_REQUEST',
        `cannot read ${length} byte(s) at offset ${offset} of a ${this.size}-byte export ` +
          `(reads are 1 byte to ${NBD_MAX_READ_LENGTH} bytes, inside the export, into a buffer large enough)`,
      );
    }
    while (
      this.failure === undefined &&
      this.closing === undefined &&
      this.inFlight.size >= this.maxInFlight
    ) {
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
    }
    if (this.closing !== undefined)
      throw this.error('NBD_CLOSED', 'the NBD client was closed before this read');
    if (this.failure !== undefined) throw this.failure;
    const handle = this.nextHandle++;
    const buffer = target === undefined ? Buffer.allocUnsafe(length) : target.subarray(0, length);
    const done = new Promise<Buffer>((resolve, reject) => {
      this.inFlight.set(handle, { offset, target: buffer, resolve, reject });
    });
    this.socket.write(request(NBD_CMD_READ, handle, offset, length));
    return done;
  }

  /**
   * Waits for the reads in flight, sends NBD_CMD_DISC (a soft disconnect) and closes the
   * connection. Safe to call more than once, and after a failure.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.wakeSlotWaiters();
      if (this.inFlight.size > 0 && this.failure === undefined) {
        await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      }
      this.options.signal?.removeEventListener('abort', this.onAbort);
      if (this.failure === undefined && !this.socket.destroyed) {
        const closed = new Promise<void>((resolve) => this.socket.once('close', () => resolve()));
        this.socket.end(request(NBD_CMD_DISC, this.nextHandle++, 0, 0));
        // The server closes its side on NBD_CMD_DISC; do not wait for a server that does not.
        const timer = setTimeout(() => this.socket.destroy(), 5_000);
        await closed;
        clearTimeout(timer);
      } else {
        this.socket.destroy();
      }
      this.failure ??= this.error('NBD_CLOSED', 'the NBD client is closed');
    })();
    return this.closing;
  }

  /** Ends the connection at once; reads in flight fail with NBD_ABORTED (`reason` as the cause). */
  destroy(reason?: unknown): void {
    this.fail(this.error('NBD_ABORTED', 'the NBD connection was closed by its user', reason));
  }

  private async receiveReplies(): Promise<void> {
    try {
      for (;;) {
        const header = await this.reader.read(16);
        const magic = header.readUInt32BE(0);
        if (magic === NBD_STRUCTURED_REPLY_MAGIC) {
          throw this.error('NBD_PROTOCOL', 'the server sent a structured reply that was never negotiated');
        }
        if (magic !== NBD_SIMPLE_REPLY_MAGIC) {
          throw this.error(
            'NBD_PROTOCOL',
            `the server sent a reply with a bad magic 0x${magic.toString(16)}`,
          );
        }
        const errno = header.readUInt32BE(4);
        const handle = header.readBigUInt64BE(8);
        const read = this.inFlight.get(handle);
        if (read === undefined) {
          throw this.error(
            'NBD_PROTOCOL',
            `the server answered handle ${handle}, which no read in flight has`,
          );
        }
        if (errno !== 0) {
          this.settle(handle);
          read.reject(
            this.error(
              'NBD_READ_ERROR',
              `the server failed the read of ${read.target.length} byte(s) at offset ${read.offset} with ${nbdErrnoName(errno)}` +
                (errno === NBD_ESHUTDOWN
                  ? ' (it is shutting down); retry later'
                  : '; retry the read or the backup'),
              undefined,
              errno,
            ),
          );
          if (errno === NBD_ESHUTDOWN) void this.close();
          continue;
        }
        await this.reader.readInto(read.target);
        this.settle(handle);
        read.resolve(read.target);
      }
    } catch (error) {
      if (error instanceof NbdError && error.code === 'NBD_CONNECTION_LOST') {
        const count = this.inFlight.size;
        const cause = error.cause instanceof Error ? ` (${error.cause.message})` : '';
        this.fail(
          this.error(
            'NBD_CONNECTION_LOST',
            `the connection ended${count > 0 ? ` with ${count} read(s) in flight` : ''}${cause}; check the host is up and retry`,
            error.cause,
          ),
        );
      } else if (error instanceof NbdError) this.fail(error);
      else this.fail(this.error('NBD_PROTOCOL', `reading replies failed: ${String(error)}`, error));
    }
  }

  private settle(handle: bigint): void {
    this.inFlight.delete(handle);
    this.slotWaiters.shift()?.();
    if (this.inFlight.size === 0) this.wakeIdleWaiters();
  }

  private wakeIdleWaiters(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const wake of waiters) wake();
  }

  private wakeSlotWaiters(): void {
    for (const wake of this.slotWaiters.splice(0)) wake();
  }

  /** Fails every read in flight and the connection (once). */
  private fail(error: NbdError): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.options.signal?.removeEventListener('abort', this.onAbort);
    for (const read of this.inFlight.values()) read.reject(error);
    this.inFlight.clear();
    this.wakeSlotWaiters();
    this.wakeIdleWaiters();
    this.socket.destroy();
  }

  private error(code: NbdErrorCode, what: string, cause?: unknown, errno?: number): NbdError {
    return new NbdError(code, `NBD export ${this.safeName} on ${this.endpoint}: ${what}`, {
      endpoint: this.endpoint,
      exportName: this.safeName,
      ...(errno === undefined ? {} : { errno }),
      ...(cause === undefined ? {} : { cause }),
    });
  }
}

function request(type: number, handle: bigint, offset: number, length: number): Buffer {
  const buffer = Buffer.alloc(28);
  buffer.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
  buffer.writeUInt16BE(0, 4);
  buffer.writeUInt16BE(type, 6);
  buffer.writeBigUInt64BE(handle, 8);
  buffer.writeBigUInt64BE(BigInt(offset), 16);
  buffer.writeUInt32BE(length, 24);
  return buffer;
}
