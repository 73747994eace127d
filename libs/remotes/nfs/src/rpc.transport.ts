import { Socket, connect } from 'node:net';
import { hostname } from 'node:os';

import { RpcError } from './rpc.errors';
import { XdrReader, XdrWriter } from './xdr.codec';

/** AUTH_SYS identity sent with every call (RFC 5531 appendix A). */
export interface RpcCredentials {
  uid: number;
  gid: number;
  gids?: readonly number[];
  machineName?: string;
}

export interface RpcConnectionOptions {
  host: string;
  port: number;
  /** null: AUTH_NONE (portmapper, some MOUNT servers accept both). */
  credentials: RpcCredentials | null;
  /** A call without reply after this long fails with RPC_TIMEOUT and the connection is dropped. */
  timeoutMs?: number;
  connectTimeoutMs?: number;
  /** Calls on the wire at once; further calls wait their turn (bounds memory for WRITE bodies). */
  maxInFlight?: number;
  /** Largest reply record accepted, a guard against a corrupt length word. */
  maxRecordBytes?: number;
}

const MSG_CALL = 0;
const MSG_REPLY = 1;
const AUTH_NONE = 0;
const AUTH_SYS = 1;
const LAST_FRAGMENT = 0x80000000;

interface PendingCall {
  xid: number;
  resolve: (reader: XdrReader) => void;
  reject: (error: Error) => void;
  timer?: NodeJS.Timeout;
  program: number;
  procedure: number;
}

interface QueuedCall {
  send: () => void;
  reject: (error: Error) => void;
}

/**
 * One TCP connection carrying ONC RPC v2 calls with record marking (RFC 5531 section 11).
 * Calls are pipelined (several in flight, matched to replies by xid) up to maxInFlight. When the
 * socket is lost every pending call fails with RPC_CONNECTION_LOST and the next call reconnects.
 */
export class RpcConnection {
  private socket: Socket | null = null;
  private connecting: Promise<Socket> | null = null;
  private nextXid = (Math.random() * 0x7fffffff) >>> 0;
  private readonly pending = new Map<number, PendingCall>();
  private readonly queue: QueuedCall[] = [];
  private inFlight = 0;
  private closed = false;
  private readonly credential: Buffer;
  // Reply reassembly state: a record is one or more fragments, each with a 4-byte header.
  private readonly header = Buffer.alloc(4);
  private headerFill = 0;
  private fragment: Buffer | null = null;
  private fragmentFill = 0;
  private lastFragment = false;
  private recordParts: Buffer[] = [];

  constructor(private readonly options: RpcConnectionOptions) {
    this.credential = encodeCredential(options.credentials);
  }

  get endpoint(): string {
    return `${this.options.host}:${this.options.port}`;
  }

  /**
   * Calls `procedure` of `program`/`version`; resolves with a reader positioned at the results.
   * `args` may be omitted for procedures without arguments.
   */
  async call(
    program: number,
    version: number,
    procedure: number,
    args?: XdrWriter,
    signal?: AbortSignal,
  ): Promise<XdrReader> {
    if (this.closed)
      throw new RpcError('RPC_CONNECTION_LOST', `RPC connection to ${this.endpoint} is closed`);
    signal?.throwIfAborted();
    await this.slot(signal);
    let socket: Socket;
    try {
      socket = await this.open();
    } catch (error) {
      this.release();
      throw error;
    }
    const xid = this.nextXid;
    this.nextXid = (this.nextXid + 1) >>> 0;
    const head = new XdrWriter()
      .uint32(0) // record mark, filled below
      .uint32(xid)
      .uint32(MSG_CALL)
      .uint32(2)
      .uint32(program)
      .uint32(version)
      .uint32(procedure);
    const { buffers: headBuffers } = head.toBuffers();
    const body = args?.toBuffers() ?? { buffers: [], length: 0 };
    const headBuffer = Buffer.concat([...headBuffers, this.credential]);
    const length = headBuffer.length - 4 + body.length;
    headBuffer.writeUInt32BE((LAST_FRAGMENT | length) >>> 0, 0);

    return new Promise<XdrReader>((resolve, reject) => {
      const entry: PendingCall = { xid, resolve, reject, program, procedure };
      const finish = (): void => {
        if (entry.timer) clearTimeout(entry.timer);
        signal?.removeEventListener('abort', onAbort);
        if (this.pending.delete(xid)) this.release();
      };
      const onAbort = (): void => {
        finish();
        reject(
          new RpcError('RPC_ABORTED', `RPC call ${program}/${procedure} to ${this.endpoint} was aborted`),
        );
      };
      entry.resolve = (reader) => {
        finish();
        resolve(reader);
      };
      entry.reject = (error) => {
        finish();
        reject(error);
      };
      const timeoutMs = this.options.timeoutMs ?? 30_000;
      entry.timer = setTimeout(() => {
        entry.reject(
          new RpcError(
            'RPC_TIMEOUT',
            `RPC call ${program}/${procedure} to ${this.endpoint} got no reply within ${timeoutMs} ms`,
          ),
        );
        // A server that stopped answering one call is not trusted with the others: reconnect.
        this.drop(
          new RpcError('RPC_CONNECTION_LOST', `RPC connection to ${this.endpoint} dropped after a timeout`),
        );
      }, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(xid, entry);
      socket.cork();
      socket.write(headBuffer);
      for (const part of body.buffers) socket.write(part);
      socket.uncork();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.drop(
      new RpcError('RPC_CONNECTION_LOST', `RPC connection to ${this.endpoint} was closed by the client`),
    );
    for (const waiter of this.queue.splice(0)) {
      waiter.reject(
        new RpcError('RPC_CONNECTION_LOST', `RPC connection to ${this.endpoint} was closed by the client`),
      );
    }
    return Promise.resolve();
  }

  private slot(signal?: AbortSignal): Promise<void> {
    const max = this.options.maxInFlight ?? 16;
    if (this.inFlight < max) {
      this.inFlight++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: QueuedCall = {
        send: () => {
          signal?.removeEventListener('abort', onAbort);
          this.inFlight++;
          resolve();
        },
        reject,
      };
      const onAbort = (): void => {
        const index = this.queue.indexOf(waiter);
        if (index >= 0) this.queue.splice(index, 1);
        reject(
          new RpcError('RPC_ABORTED', `RPC call to ${this.endpoint} was aborted while waiting for a slot`),
        );
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(waiter);
    });
  }

  private release(): void {
    this.inFlight--;
    const next = this.queue.shift();
    if (next) next.send();
  }

  private open(): Promise<Socket> {
    if (this.closed) {
      return Promise.reject(
        new RpcError('RPC_CONNECTION_LOST', `RPC connection to ${this.endpoint} is closed`),
      );
    }
    if (this.socket) return Promise.resolve(this.socket);
    if (this.connecting) return this.connecting;
    const timeoutMs = this.options.connectTimeoutMs ?? 10_000;
    this.connecting = new Promise<Socket>((resolve, reject) => {
      const socket = connect({ host: this.options.host, port: this.options.port, noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new RpcError(
            'RPC_CONNECT_FAILED',
            `connecting to ${this.endpoint} timed out after ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        this.attach(socket);
        resolve(socket);
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(
          new RpcError('RPC_CONNECT_FAILED', `cannot connect to ${this.endpoint}: ${error.message}`, {
            cause: error,
          }),
        );
      });
    }).finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private attach(socket: Socket): void {
    this.socket = socket;
    this.headerFill = 0;
    this.fragment = null;
    this.recordParts = [];
    socket.on('data', (chunk: Buffer) => {
      try {
        this.receive(chunk);
      } catch (error) {
        this.drop(
          new RpcError(
            'RPC_PROTOCOL_ERROR',
            `malformed RPC reply from ${this.endpoint}: ${(error as Error).message}`,
            {
              cause: error,
            },
          ),
        );
      }
    });
    socket.on('error', () => {
      // 'close' follows and fails the pending calls.
    });
    socket.on('close', () => {
      if (this.socket === socket) {
        this.drop(new RpcError('RPC_CONNECTION_LOST', `connection to ${this.endpoint} was lost`));
      }
    });
  }

  private drop(error: RpcError): void {
    const socket = this.socket;
    this.socket = null;
    socket?.destroy();
    for (const entry of [...this.pending.values()]) entry.reject(error);
  }

  private receive(chunk: Buffer): void {
    let position = 0;
    while (position < chunk.length) {
      if (this.fragment === null) {
        const take = Math.min(4 - this.headerFill, chunk.length - position);
        chunk.copy(this.header, this.headerFill, position, position + take);
        this.headerFill += take;
        position += take;
        if (this.headerFill < 4) return;
        this.headerFill = 0;
        const word = this.header.readUInt32BE(0);
        this.lastFragment = (word & LAST_FRAGMENT) !== 0;
        const length = word & 0x7fffffff;
        const max = this.options.maxRecordBytes ?? 16 * 1024 * 1024;
        if (length > max) throw new Error(`record fragment of ${length} bytes exceeds ${max}`);
        this.fragment = Buffer.allocUnsafe(length);
        this.fragmentFill = 0;
        if (length === 0) this.completeFragment();
        continue;
      }
      const take = Math.min(this.fragment.length - this.fragmentFill, chunk.length - position);
      chunk.copy(this.fragment, this.fragmentFill, position, position + take);
      this.fragmentFill += take;
      position += take;
      if (this.fragmentFill === this.fragment.length) this.completeFragment();
    }
  }

  private completeFragment(): void {
    if (this.fragment === null) return;
    this.recordParts.push(this.fragment);
    this.fragment = null;
    if (!this.lastFragment) return;
    const first = this.recordParts.at(0);
    const record =
      this.recordParts.length === 1 && first !== undefined ? first : Buffer.concat(this.recordParts);
    this.recordParts = [];
    this.dispatch(record);
  }

  private dispatch(record: Buffer): void {
    const reader = new XdrReader(record);
    const xid = reader.uint32();
    if (reader.uint32() !== MSG_REPLY) throw new Error(`message ${xid} is not a reply`);
    const entry = this.pending.get(xid);
    if (!entry) return; // a reply to a call that already timed out or was aborted
    const failure = readReplyHeader(reader, this.endpoint, entry);
    if (failure) entry.reject(failure);
    else entry.resolve(reader);
  }
}

/** Reads the reply header; returns the error to report, or null when the results follow. */
export function readReplyHeader(
  reader: XdrReader,
  endpoint: string,
  call: { program: number; procedure: number },
): RpcError | null {
  const what = `RPC call ${call.program}/${call.procedure} to ${endpoint}`;
  const replyStat = reader.uint32();
  if (replyStat === 1) {
    const rejectStat = reader.uint32();
    if (rejectStat === 1) {
      const authStat = reader.uint32();
      return new RpcError(
        'RPC_AUTH_ERROR',
        `${what} was refused: authentication error ${authStat} (check uid/gid and the export's security flavours)`,
      );
    }
    return new RpcError('RPC_PROTOCOL_ERROR', `${what} was refused: RPC version mismatch`);
  }
  reader.uint32(); // verifier flavour
  reader.opaque(400); // verifier body
  const acceptStat = reader.uint32();
  switch (acceptStat) {
    case 0:
      return null;
    case 1:
      return new RpcError('RPC_PROGRAM_UNAVAILABLE', `${what} failed: program not available on the server`);
    case 2:
      return new RpcError(
        'RPC_PROGRAM_UNAVAILABLE',
        `${what} failed: program version not supported by the server`,
      );
    case 3:
      return new RpcError('RPC_PROCEDURE_UNAVAILABLE', `${what} failed: procedure not available`);
    case 4:
      return new RpcError('RPC_GARBAGE_ARGS', `${what} failed: the server could not decode the arguments`);
    default:
      return new RpcError('RPC_SYSTEM_ERROR', `${what} failed: server system error (${acceptStat})`);
  }
}

/** Credential and (null) verifier, encoded once per connection. */
export function encodeCredential(credentials: RpcCredentials | null): Buffer {
  const writer = new XdrWriter();
  if (credentials === null) {
    writer.uint32(AUTH_NONE).uint32(0);
  } else {
    const body = new XdrWriter()
      .uint32(Math.floor(Date.now() / 1000))
      .string((credentials.machineName ?? hostname()).slice(0, 255))
      .uint32(credentials.uid)
      .uint32(credentials.gid)
      .uint32(Math.min(credentials.gids?.length ?? 0, 16));
    for (const gid of (credentials.gids ?? []).slice(0, 16)) body.uint32(gid);
    writer.uint32(AUTH_SYS).opaque(body.toBuffer());
  }
  writer.uint32(AUTH_NONE).uint32(0);
  return writer.toBuffer();
}
