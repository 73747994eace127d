import { createHmac } from 'node:crypto';
import { Socket, connect } from 'node:net';

import { NtStatus, Smb2ConnectionError } from './smb2.status';

export const Smb2Command = {
  NEGOTIATE: 0,
  SESSION_SETUP: 1,
  LOGOFF: 2,
  TREE_CONNECT: 3,
  TREE_DISCONNECT: 4,
  CREATE: 5,
  CLOSE: 6,
  FLUSH: 7,
  READ: 8,
  WRITE: 9,
  QUERY_DIRECTORY: 14,
  QUERY_INFO: 16,
  SET_INFO: 17,
} as const;

export type Smb2CommandName = keyof typeof Smb2Command;

export const HEADER_SIZE = 64;
const FLAG_RESPONSE = 0x1;
const FLAG_ASYNC = 0x2;
const FLAG_SIGNED = 0x8;

export interface Smb2Response {
  status: number;
  /** The whole message, header included: offsets in SMB2 bodies count from the header start. */
  message: Buffer;
  sessionId: bigint;
  treeId: number;
}

export interface Smb2ConnectionOptions {
  host: string;
  port: number;
  timeoutMs: number;
  connectTimeoutMs: number;
}

interface Pending {
  resolve: (response: Smb2Response) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

interface CreditWaiter {
  charge: number;
  resume: () => void;
  reject: (error: Error) => void;
}

/**
 * SMB2 over direct TCP (port 445 framing: a 4-byte length before each message). Requests are
 * pipelined; message ids and credits follow MS-SMB2 3.2.4.1: a request costs `charge` credits
 * (one per 64 KiB with large MTU) and waits when the server has not granted enough.
 */
export class Smb2Connection {
  private socket: Socket | null = null;
  private lost: Error | null = null;
  private nextMessageId = 0n;
  private credits = 1;
  private readonly pending = new Map<bigint, Pending>();
  private readonly creditWaiters: CreditWaiter[] = [];
  private readonly header = Buffer.alloc(4);
  private headerFill = 0;
  private frame: Buffer | null = null;
  private frameFill = 0;
  /** Set once the session is established and the server asked for signing. */
  signingKey: Buffer | null = null;
  sessionId = 0n;
  largeMtu = false;

  constructor(private readonly options: Smb2ConnectionOptions) {}

  get endpoint(): string {
    return `${this.options.host}:${this.options.port}`;
  }

  get alive(): boolean {
    return this.socket !== null && this.lost === null;
  }

  connect(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const socket = connect({ host: this.options.host, port: this.options.port, noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new Smb2ConnectionError(
            'SMB_CONNECT_FAILED',
            `connecting to SMB server ${this.endpoint} timed out after ${this.options.connectTimeoutMs} ms`,
          ),
        );
      }, this.options.connectTimeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        this.socket = socket;
        socket.on('data', (chunk: Buffer) => {
          try {
            this.receive(chunk);
          } catch (error) {
            this.fail(
              new Smb2ConnectionError(
                'SMB_PROTOCOL_ERROR',
                `malformed SMB2 reply from ${this.endpoint}: ${(error as Error).message}`,
              ),
            );
          }
        });
        socket.on('error', () => undefined); // 'close' follows
        socket.on('close', () =>
          this.fail(
            new Smb2ConnectionError(
              'SMB_CONNECTION_LOST',
              `connection to SMB server ${this.endpoint} was lost`,
            ),
          ),
        );
        resolve();
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(
          new Smb2ConnectionError(
            'SMB_CONNECT_FAILED',
            `cannot connect to SMB server ${this.endpoint}: ${error.message}`,
            {
              cause: error,
            },
          ),
        );
      });
    });
  }

  /**
   * Sends one request (body without header) and resolves with the final response, whatever its
   * status: interpreting statuses is the caller's job. `payload` is extra data sent after the
   * body without copying (WRITE data); `charge` defaults to what the payload size needs.
   */
  async request(
    command: Smb2CommandName,
    body: Buffer,
    options: { treeId?: number; payload?: Buffer; responseSize?: number; signal?: AbortSignal } = {},
  ): Promise<Smb2Response> {
    if (this.lost) throw this.lost;
    options.signal?.throwIfAborted();
    const size = Math.max(body.length + (options.payload?.length ?? 0), options.responseSize ?? 0);
    const charge = this.largeMtu ? Math.max(1, Math.ceil(size / 65536)) : 1;
    await this.takeCredits(charge);
    const socket = this.openSocket();
    const messageId = this.nextMessageId;
    this.nextMessageId += BigInt(charge);

    const header = Buffer.alloc(HEADER_SIZE);
    header.writeUInt32BE(0xfe534d42, 0);
    header.writeUInt16LE(HEADER_SIZE, 4);
    header.writeUInt16LE(this.largeMtu ? charge : 0, 6);
    header.writeUInt16LE(Smb2Command[command], 12);
    // Ask for enough credits to keep a window of large requests in flight.
    header.writeUInt16LE(Math.max(charge, 256), 14);
    header.writeBigUInt64LE(messageId, 24);
    header.writeUInt32LE(0xfeff, 32);
    header.writeUInt32LE(options.treeId ?? 0, 36);
    header.writeBigUInt64LE(this.sessionId, 40);
    const parts = options.payload ? [header, body, options.payload] : [header, body];
    if (this.signingKey !== null && command !== 'SESSION_SETUP' && command !== 'NEGOTIATE') {
      header.writeUInt32LE(FLAG_SIGNED, 16);
      const mac = createHmac('sha256', this.signingKey);
      for (const part of parts) mac.update(part);
      mac.digest().copy(header, 48, 0, 16);
    }
    const length = parts.reduce((sum, part) => sum + part.length, 0);
    const frame = Buffer.alloc(4);
    frame.writeUInt32BE(length, 0);

    return new Promise<Smb2Response>((resolve, reject) => {
      const onAbort = (): void => {
        settle();
        reject(new Smb2ConnectionError('SMB_ABORTED', `SMB2 ${command} to ${this.endpoint} was aborted`));
      };
      const settle = (): void => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        this.pending.delete(messageId);
      };
      const timer = setTimeout(() => {
        settle();
        reject(
          new Smb2ConnectionError(
            'SMB_TIMEOUT',
            `SMB2 ${command} to ${this.endpoint} got no reply within ${this.options.timeoutMs} ms`,
          ),
        );
        // A server that stopped answering is not trusted with the other requests either.
        this.fail(
          new Smb2ConnectionError(
            'SMB_CONNECTION_LOST',
            `connection to ${this.endpoint} dropped after a timeout`,
          ),
        );
      }, this.options.timeoutMs);
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(messageId, {
        resolve: (response) => {
          settle();
          resolve(response);
        },
        reject: (error) => {
          settle();
          reject(error);
        },
        timer,
      });
      socket.cork();
      socket.write(frame);
      for (const part of parts) socket.write(part);
      socket.uncork();
    });
  }

  close(): void {
    this.fail(
      new Smb2ConnectionError(
        'SMB_CONNECTION_LOST',
        `connection to ${this.endpoint} was closed by the client`,
      ),
    );
  }

  /** The socket, or the reason there is none (checked again after waiting for credits). */
  private openSocket(): Socket {
    if (this.lost !== null) throw this.lost;
    if (this.socket === null)
      throw new Smb2ConnectionError('SMB_CONNECTION_LOST', `not connected to ${this.endpoint}`);
    return this.socket;
  }

  private takeCredits(charge: number): Promise<void> {
    if (this.credits >= charge && this.creditWaiters.length === 0) {
      this.credits -= charge;
      return Promise.resolve();
    }
    return new Promise<void>((resume, reject) => {
      this.creditWaiters.push({ charge, resume, reject });
    });
  }

  private grant(credits: number): void {
    this.credits += credits;
    while (this.creditWaiters.length > 0) {
      const next = this.creditWaiters.at(0);
      if (next === undefined || next.charge > this.credits) break;
      this.creditWaiters.shift();
      this.credits -= next.charge;
      next.resume();
    }
  }

  private fail(error: Error): void {
    if (this.lost === null) this.lost = error;
    const socket = this.socket;
    this.socket = null;
    socket?.destroy();
    for (const entry of [...this.pending.values()]) entry.reject(this.lost);
    for (const waiter of this.creditWaiters.splice(0)) waiter.reject(this.lost);
  }

  private receive(chunk: Buffer): void {
    let position = 0;
    while (position < chunk.length) {
      if (this.frame === null) {
        const take = Math.min(4 - this.headerFill, chunk.length - position);
        chunk.copy(this.header, this.headerFill, position, position + take);
        this.headerFill += take;
        position += take;
        if (this.headerFill < 4) return;
        this.headerFill = 0;
        const length = this.header.readUInt32BE(0) & 0x00ffffff;
        if (length < HEADER_SIZE) throw new Error(`frame of ${length} bytes is shorter than an SMB2 header`);
        this.frame = Buffer.allocUnsafe(length);
        this.frameFill = 0;
        continue;
      }
      const take = Math.min(this.frame.length - this.frameFill, chunk.length - position);
      chunk.copy(this.frame, this.frameFill, position, position + take);
      this.frameFill += take;
      position += take;
      if (this.frameFill === this.frame.length) {
        const message = this.frame;
        this.frame = null;
        this.dispatch(message);
      }
    }
  }

  private dispatch(message: Buffer): void {
    if (message.readUInt32BE(0) !== 0xfe534d42) throw new Error('reply is not an SMB2 message');
    const flags = message.readUInt32LE(16);
    if ((flags & FLAG_RESPONSE) === 0) throw new Error('the server sent a request');
    if (message.readUInt32LE(20) !== 0) throw new Error('compounded replies are not expected');
    const status = message.readUInt32LE(8);
    const messageId = message.readBigUInt64LE(24);
    this.grant(message.readUInt16LE(14));
    // An interim "pending" reply: the real one follows with the same message id.
    if ((flags & FLAG_ASYNC) !== 0 && status === NtStatus.PENDING) return;
    const entry = this.pending.get(messageId);
    if (!entry) return;
    entry.resolve({
      status,
      message,
      sessionId: message.readBigUInt64LE(40),
      treeId: (flags & FLAG_ASYNC) !== 0 ? 0 : message.readUInt32LE(36),
    });
  }
}
