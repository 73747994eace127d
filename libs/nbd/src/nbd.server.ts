import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import {
  NBD_CMD_DISC,
  NBD_CMD_READ,
  NBD_CMD_WRITE,
  NBD_EINVAL,
  NBD_EIO,
  NBD_EPERM,
  NBD_EXPORT_NAME_PADDING,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_INFO_EXPORT,
  NBD_INIT_MAGIC,
  NBD_MAX_OPTION_LENGTH,
  NBD_MAX_READ_LENGTH,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_REPLY_MAGIC,
  NBD_OPT_STARTTLS,
  NBD_OPTS_MAGIC,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
} from './nbd.protocol';
import { SocketByteReader } from './socket-byte.reader';

/** One export as the server core sees it: a size and a way to read it. */
export interface NbdExport {
  readonly size: number;
  /**
   * `length` bytes at `offset` (always inside the export). Throw an NbdReadFailure to answer with
   * a given error value, an NbdConnectionDrop to drop the connection; any other error is
   * answered with EIO.
   */
  read(offset: number, length: number): Promise<Buffer>;
  /** Called once the connection that opened the export ends. */
  close?(): void;
}

/** Thrown by `openExport`: the client gets NBD_REP_ERR_UNKNOWN with this message. */
export class NbdExportRefusal extends Error {
  override readonly name = 'NbdExportRefusal';
}

/** Thrown by `NbdExport.read`: the reply carries `errno` (an NBD error value, e.g. NBD_EIO). */
export class NbdReadFailure extends Error {
  override readonly name = 'NbdReadFailure';
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Thrown by `NbdExport.read`: no reply at all, the connection is dropped (what a host crash or a
 * cut cable looks like to the client; the simulator injects it as a fault).
 */
export class NbdConnectionDrop extends Error {
  override readonly name = 'NbdConnectionDrop';
}

export interface NbdServerOptions {
  /** Resolves an export name to an export, or throws NbdExportRefusal. */
  openExport(name: string): Promise<NbdExport> | NbdExport;
  /** With a key and certificate TLS is mandatory (XAPI's `nbd` network purpose); without, plain. */
  tls?: { key: string; cert: string };
  /** Reads of one connection served at once (more wait in the socket). Default 8. */
  maxInFlight?: number;
  /**
   * Errors of the listener once it listens (a failed accept…). Without it such an error is
   * Node's default for an unhandled 'error': the process fails.
   */
  onListenerError?: (error: Error) => void;
}

export interface NbdServerStats {
  connections: number;
  /** Connections that reached the transmission phase. */
  exportsOpened: number;
  reads: number;
  bytesRead: number;
  readErrors: number;
}

class ConnectionEnded extends Error {}

/**
 * The server side of NBD (fixed newstyle; NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_EXPORT_NAME,
 * NBD_OPT_STARTTLS, NBD_OPT_ABORT; read-only exports with simple replies, answered as reads
 * complete). Serves sockets handed to `handle`, or listens itself with `listen`.
 */
export class NbdServer {
  readonly stats: NbdServerStats = {
    connections: 0,
    exportsOpened: 0,
    reads: 0,
    bytesRead: 0,
    readErrors: 0,
  };
  private readonly sockets = new Set<Socket>();
  private listener: Server | undefined;
  private readonly maxInFlight: number;

  constructor(private readonly options: NbdServerOptions) {
    this.maxInFlight = options.maxInFlight ?? 8;
  }

  /** Listens on `port` (0: any free port); resolves with the address bound. */
  async listen(port: number, host: string): Promise<AddressInfo> {
    const server = createServer((socket) => this.handle(socket));
    this.listener = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const onListenerError = this.options.onListenerError;
    if (onListenerError !== undefined) server.on('error', onListenerError);
    return server.address() as AddressInfo;
  }

  /** Serves one connection until the client disconnects or the server closes. */
  handle(socket: Socket): void {
    this.stats.connections++;
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    socket.once('close', () => this.sockets.delete(socket));
    new NbdServerConnection(socket, this.options, this.maxInFlight, this.stats)
      .serve()
      .catch(() => undefined)
      .finally(() => {
        // Let what was written (an abort's acknowledgement) go out; a client that lingers is cut.
        socket.end();
        setTimeout(() => socket.destroy(), 2_000).unref();
      });
  }

  /** Stops listening and drops every connection. */
  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    const listener = this.listener;
    this.listener = undefined;
    if (listener !== undefined) await new Promise<void>((resolve) => listener.close(() => resolve()));
  }
}

class NbdServerConnection {
  private socket: Socket;
  private reader: SocketByteReader;
  private secure = false;
  private inFlight = 0;
  private slotWaiters: (() => void)[] = [];
  private closed = false;
  private draining: Promise<void> | undefined;

  constructor(
    socket: Socket,
    private readonly options: NbdServerOptions,
    private readonly maxInFlight: number,
    private readonly stats: NbdServerStats,
  ) {
    this.socket = socket;
    this.reader = this.attach(socket);
    socket.once('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  async serve(): Promise<void> {
    const greeting = Buffer.alloc(18);
    greeting.writeBigUInt64BE(NBD_INIT_MAGIC, 0);
    greeting.writeBigUInt64BE(NBD_OPTS_MAGIC, 8);
    greeting.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, 16);
    this.socket.write(greeting);
    const clientFlags = (await this.reader.read(4)).readUInt32BE(0);
    // Plain newstyle clients (without the fixed flag) are not served: they cannot be told "no".
    if ((clientFlags & NBD_FLAG_C_FIXED_NEWSTYLE) === 0) return;
    const noZeroes = (clientFlags & NBD_FLAG_C_NO_ZEROES) !== 0;
    const opened = await this.negotiate(noZeroes);
    if (opened === undefined) return;
    this.stats.exportsOpened++;
    try {
      await this.transmit(opened);
    } finally {
      opened.close?.();
    }
  }

  private attach(socket: Socket): SocketByteReader {
    return new SocketByteReader(socket, () => new ConnectionEnded());
  }

  private get tlsRequired(): boolean {
    return this.options.tls !== undefined && !this.secure;
  }

  private reply(option: number, type: number, data: Buffer = Buffer.alloc(0)): void {
    const header = Buffer.alloc(20);
    header.writeBigUInt64BE(NBD_OPT_REPLY_MAGIC, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(type, 12);
    header.writeUInt32BE(data.length, 16);
    this.socket.write(Buffer.concat([header, data]));
  }

  private async open(name: string): Promise<NbdExport | string> {
    try {
      return await this.options.openExport(name);
    } catch (error) {
      return error instanceof NbdExportRefusal ? error.message : 'the export cannot be opened';
    }
  }

  /** Option haggling; resolves with the export to transmit, or undefined when the client left. */
  private async negotiate(noZeroes: boolean): Promise<NbdExport | undefined> {
    for (;;) {
      const header = await this.reader.read(16);
      if (header.readBigUInt64BE(0) !== NBD_OPTS_MAGIC) return undefined;
      const option = header.readUInt32BE(8);
      const length = header.readUInt32BE(12);
      if (length > NBD_MAX_OPTION_LENGTH) return undefined;
      const data = await this.reader.read(length);
      switch (option) {
        case NBD_OPT_ABORT:
          this.reply(option, NBD_REP_ACK);
          this.socket.end();
          return undefined;
        case NBD_OPT_STARTTLS:
          if (this.options.tls === undefined) {
            this.reply(option, NBD_REP_ERR_POLICY, Buffer.from('this server does not offer TLS'));
          } else if (this.secure) {
            this.reply(option, NBD_REP_ERR_INVALID, Buffer.from('TLS is already on'));
          } else {
            this.reply(option, NBD_REP_ACK);
            await this.upgrade(this.options.tls);
          }
          continue;
        case NBD_OPT_EXPORT_NAME: {
          // This option cannot be answered with an error: a refusal closes the connection.
          if (this.tlsRequired) return undefined;
          const opened = await this.open(data.toString('utf8'));
          if (typeof opened === 'string') return undefined;
          const answer = Buffer.alloc(10 + (noZeroes ? 0 : NBD_EXPORT_NAME_PADDING));
          answer.writeBigUInt64BE(BigInt(opened.size), 0);
          answer.writeUInt16BE(NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY, 8);
          this.socket.write(answer);
          return opened;
        }
        case NBD_OPT_INFO:
        case NBD_OPT_GO: {
          if (this.tlsRequired) {
            this.reply(option, NBD_REP_ERR_TLS_REQD, Buffer.from('start TLS first'));
            continue;
          }
          const nameLength = data.length >= 4 ? data.readUInt32BE(0) : -1;
          if (nameLength < 0 || 4 + nameLength + 2 > data.length) {
            this.reply(option, NBD_REP_ERR_INVALID, Buffer.from('malformed export name'));
            continue;
          }
          const opened = await this.open(data.toString('utf8', 4, 4 + nameLength));
          if (typeof opened === 'string') {
            this.reply(option, NBD_REP_ERR_UNKNOWN, Buffer.from(opened));
            continue;
          }
          const info = Buffer.alloc(12);
          info.writeUInt16BE(NBD_INFO_EXPORT, 0);
          info.writeBigUInt64BE(BigInt(opened.size), 2);
          info.writeUInt16BE(NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY, 10);
          this.reply(option, NBD_REP_INFO, info);
          this.reply(option, NBD_REP_ACK);
          if (option === NBD_OPT_GO) return opened;
          opened.close?.();
          continue;
        }
        default:
          this.reply(
            option,
            this.tlsRequired ? NBD_REP_ERR_TLS_REQD : NBD_REP_ERR_UNSUP,
            Buffer.from(`option ${option} is not supported`),
          );
      }
    }
  }

  private async upgrade(tls: { key: string; cert: string }): Promise<void> {
    this.reader.detach();
    const secure = new TLSSocket(this.socket, { isServer: true, key: tls.key, cert: tls.cert });
    secure.on('error', () => undefined);
    secure.once('close', () => {
      this.closed = true;
      this.wake();
    });
    await new Promise<void>((resolve, reject) => {
      secure.once('secure', resolve);
      secure.once('error', reject);
      secure.once('close', () => reject(new ConnectionEnded()));
    });
    this.secure = true;
    this.socket = secure;
    this.reader = this.attach(secure);
  }

  private async transmit(opened: NbdExport): Promise<void> {
    for (;;) {
      const request = await this.reader.read(28);
      if (request.readUInt32BE(0) !== NBD_REQUEST_MAGIC) return;
      const type = request.readUInt16BE(6);
      const handle = request.subarray(8, 16);
      const offset = Number(request.readBigUInt64BE(16));
      const length = request.readUInt32BE(24);
      switch (type) {
        case NBD_CMD_READ:
          if (length === 0 || length > NBD_MAX_READ_LENGTH || offset + length > opened.size) {
            this.answer(handle, NBD_EINVAL);
            continue;
          }
          while (this.inFlight >= this.maxInFlight && !this.closed) {
            await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
          }
          if (this.closed) return;
          this.inFlight++;
          void this.serveRead(opened, Buffer.from(handle), offset, length);
          continue;
        case NBD_CMD_WRITE:
          // Read-only: the payload is read and dropped, the write refused.
          for (let left = length; left > 0; left -= Math.min(left, 1024 * 1024)) {
            await this.reader.read(Math.min(left, 1024 * 1024));
          }
          this.answer(handle, NBD_EPERM);
          continue;
        case NBD_CMD_DISC:
          while (this.inFlight > 0 && !this.closed) {
            await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
          }
          this.socket.end();
          return;
        default:
          this.answer(handle, NBD_EINVAL);
      }
    }
  }

  private async serveRead(opened: NbdExport, handle: Buffer, offset: number, length: number): Promise<void> {
    try {
      let data: Buffer;
      try {
        data = await opened.read(offset, length);
        if (data.length !== length) throw new Error(`the export read ${data.length} of ${length} bytes`);
      } catch (error) {
        this.stats.readErrors++;
        if (error instanceof NbdConnectionDrop) this.socket.destroy();
        else this.answer(handle, error instanceof NbdReadFailure ? error.errno : NBD_EIO);
        return;
      }
      this.stats.reads++;
      this.stats.bytesRead += length;
      if (this.closed) return;
      // Header and data are written back to back: replies never interleave.
      this.answer(handle, 0);
      if (!this.socket.write(data)) await this.drained();
    } finally {
      this.inFlight--;
      this.wake();
    }
  }

  /** One wait for 'drain' shared by every read whose data filled the socket's buffer. */
  private drained(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.draining ??= new Promise<void>((resolve) => {
      const socket = this.socket;
      const done = (): void => {
        socket.off('drain', done);
        socket.off('close', done);
        this.draining = undefined;
        resolve();
      };
      socket.on('drain', done);
      socket.on('close', done);
    });
    return this.draining;
  }

  private answer(handle: Buffer, errno: number): void {
    if (this.closed) return;
    const reply = Buffer.alloc(16);
    reply.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
    reply.writeUInt32BE(errno, 4);
    handle.copy(reply, 8);
    this.socket.write(reply);
  }

  private wake(): void {
    const waiters = this.slotWaiters;
    this.slotWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
