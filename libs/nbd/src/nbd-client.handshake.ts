import { connect as connectTcp, isIP, type Socket } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { checkServerIdentity, connect as connectTls, type TLSSocket } from 'node:tls';
import { NbdError, isNbdError, redactExportName, type NbdErrorCode } from './nbd.error';
import type { NbdConnectOptions } from './nbd.client';
import {
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_EXPORT,
  NBD_INIT_MAGIC,
  NBD_MAX_OPTION_LENGTH,
  NBD_OLDSTYLE_MAGIC,
  NBD_EXPORT_NAME_PADDING,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_REPLY_MAGIC,
  NBD_OPT_STARTTLS,
  NBD_OPTS_MAGIC,
  NBD_REP_ACK,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_FLAG_ERROR,
  NBD_REP_INFO,
  nbdReplyName,
} from './nbd.protocol';
import { SocketByteReader } from './socket-byte.reader';

interface OptionReply {
  type: number;
  data: Buffer;
}

export interface NegotiatedExport {
  socket: Socket | TLSSocket;
  reader: SocketByteReader;
  size: number;
  flags: number;
}

/**
 * The client's side of the fixed newstyle negotiation: greeting, client flags, NBD_OPT_STARTTLS
 * when TLS is asked for, then NBD_OPT_GO with the export name; NBD_OPT_EXPORT_NAME (which cannot
 * say why it refuses an export) only with a server that does not know NBD_OPT_GO.
 */
export class NbdHandshake {
  private readonly endpoint: string;
  private readonly safeName: string;
  private socket: Socket | TLSSocket | undefined;
  private reader: SocketByteReader | undefined;
  /** Both sides agreed to drop NBD_OPT_EXPORT_NAME's 124 zeros. */
  private noZeroes = false;

  constructor(private readonly options: NbdConnectOptions) {
    this.endpoint = `${options.host}:${options.port}`;
    this.safeName = redactExportName(options.exportName);
  }

  async run(): Promise<NegotiatedExport> {
    const { signal } = this.options;
    signal?.throwIfAborted();
    const onAbort = (): void => {
      this.socket?.destroy(this.error('NBD_ABORTED', 'the connection was cancelled', signal?.reason));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const socket = await this.open();
      const reader = this.attach(socket);
      const greeting = await reader.read(18);
      if (greeting.readBigUInt64BE(0) !== NBD_INIT_MAGIC) {
        throw this.error(
          'NBD_HANDSHAKE_REFUSED',
          'the server is not an NBD server (no NBDMAGIC greeting); check the port',
        );
      }
      const style = greeting.readBigUInt64BE(8);
      if (style === NBD_OLDSTYLE_MAGIC) {
        throw this.error(
          'NBD_HANDSHAKE_REFUSED',
          'the server speaks only the oldstyle protocol, which has no export names',
        );
      }
      if (style !== NBD_OPTS_MAGIC) {
        throw this.error('NBD_HANDSHAKE_REFUSED', 'the server sent an unknown greeting');
      }
      const serverFlags = greeting.readUInt16BE(16);
      if ((serverFlags & NBD_FLAG_FIXED_NEWSTYLE) === 0) {
        throw this.error('NBD_HANDSHAKE_REFUSED', 'the server does not speak the fixed newstyle negotiation');
      }
      this.noZeroes = (serverFlags & NBD_FLAG_NO_ZEROES) !== 0;
      const clientFlags = Buffer.alloc(4);
      clientFlags.writeUInt32BE(NBD_FLAG_C_FIXED_NEWSTYLE | (this.noZeroes ? NBD_FLAG_C_NO_ZEROES : 0));
      this.write(clientFlags);
      if (this.options.tls !== undefined) await this.startTls();
      const negotiated = await this.go();
      signal?.throwIfAborted();
      return negotiated;
    } catch (error) {
      this.socket?.destroy();
      if (signal?.aborted === true) {
        throw this.error('NBD_ABORTED', 'the connection was cancelled', signal.reason);
      }
      throw error;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private open(): Promise<Socket> {
    return new Promise<Socket>((resolve, reject) => {
      const socket = connectTcp({ host: this.options.host, port: this.options.port });
      socket.setNoDelay(true);
      this.socket = socket;
      const onError = (error: Error): void => {
        reject(
          this.error(
            'NBD_CONNECT_FAILED',
            `cannot connect (${error.message}); check that the host's NBD port is reachable from this worker`,
            error,
          ),
        );
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolve(socket);
      });
    });
  }

  private attach(socket: Socket | TLSSocket): SocketByteReader {
    this.reader = new SocketByteReader(socket, (cause) =>
      cause instanceof NbdError
        ? cause
        : this.error(
            'NBD_CONNECTION_LOST',
            `the connection ended${cause === undefined ? '' : ` (${cause.message})`}`,
            cause,
          ),
    );
    return this.reader;
  }

  private write(data: Buffer): void {
    this.socket?.write(data);
  }

  private sendOption(option: number, data: Buffer = Buffer.alloc(0)): void {
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(NBD_OPTS_MAGIC, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([header, data]));
  }

  private async readReply(option: number): Promise<OptionReply> {
    const reader = this.reader;
    if (reader === undefined) throw new Error('not connected');
    const header = await reader.read(20);
    if (header.readBigUInt64BE(0) !== NBD_OPT_REPLY_MAGIC) {
      throw this.error('NBD_PROTOCOL', 'the server sent an option reply with a bad magic');
    }
    const answered = header.readUInt32BE(8);
    const type = header.readUInt32BE(12);
    const length = header.readUInt32BE(16);
    if (answered !== option) {
      throw this.error(
        'NBD_PROTOCOL',
        `the server answered option ${answered} while option ${option} was asked`,
      );
    }
    if (length > NBD_MAX_OPTION_LENGTH) {
      throw this.error('NBD_PROTOCOL', `the server sent an option reply of ${length} bytes`);
    }
    return { type, data: await reader.read(length) };
  }

  /** What the server said with an error reply (its message, when it sent one). */
  private refusal(reply: OptionReply): string {
    const message = reply.data.toString('utf8').trim();
    return `${nbdReplyName(reply.type)}${message === '' ? '' : `: ${message}`}`;
  }

  private async startTls(): Promise<void> {
    const tls = this.options.tls;
    const plain = this.socket;
    if (tls === undefined || plain === undefined) return;
    this.sendOption(NBD_OPT_STARTTLS);
    const reply = await this.readReply(NBD_OPT_STARTTLS);
    if (reply.type !== NBD_REP_ACK) {
      throw this.error(
        'NBD_TLS_FAILED',
        `the server refused TLS (${this.refusal(reply)}); the pool gave a certificate, so plain NBD is not used`,
      );
    }
    this.reader?.detach();
    let expected: X509Certificate;
    try {
      expected = new X509Certificate(tls.cert);
    } catch (error) {
      throw this.error(
        'NBD_TLS_FAILED',
        'the certificate given for the host is not a PEM certificate',
        error,
      );
    }
    const servername = tls.servername ?? this.options.host;
    const secure = await new Promise<TLSSocket>((resolve, reject) => {
      // The certificate came over the authenticated XAPI session: it is pinned (the host must
      // present exactly it), which also holds for a CA-signed host certificate whose chain this
      // worker does not know. The name is checked on top.
      const socket = connectTls({
        socket: plain,
        rejectUnauthorized: false,
        ...(isIP(servername) === 0 ? { servername } : {}),
      });
      this.socket = socket;
      socket.once('secureConnect', () => {
        socket.off('error', onError);
        const presented = socket.getPeerCertificate();
        const mismatch =
          !Buffer.isBuffer(presented.raw) || !presented.raw.equals(expected.raw)
            ? `the host presented the certificate ${presented.fingerprint256 || '(none)'}, not the one XAPI gave (${expected.fingerprint256})`
            : checkServerIdentity(servername, presented)?.message;
        if (mismatch !== undefined) {
          socket.destroy();
          reject(this.error('NBD_TLS_FAILED', `${mismatch}; check the host certificate`));
          return;
        }
        resolve(socket);
      });
      const onError = (error: Error): void => {
        reject(
          this.error(
            'NBD_TLS_FAILED',
            `the TLS handshake failed (${error.message}); check the host certificate`,
            error,
          ),
        );
      };
      socket.once('error', onError);
    });
    this.attach(secure);
  }

  private async go(): Promise<NegotiatedExport> {
    const name = Buffer.from(this.options.exportName, 'utf8');
    const data = Buffer.alloc(4 + name.length + 2);
    data.writeUInt32BE(name.length, 0);
    name.copy(data, 4);
    data.writeUInt16BE(0, 4 + name.length);
    this.sendOption(NBD_OPT_GO, data);
    let size: number | undefined;
    let flags = 0;
    for (;;) {
      const reply = await this.readReply(NBD_OPT_GO);
      if (reply.type === NBD_REP_INFO) {
        if (reply.data.length >= 12 && reply.data.readUInt16BE(0) === NBD_INFO_EXPORT) {
          const bytes = reply.data.readBigUInt64BE(2);
          if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) {
            throw this.error('NBD_PROTOCOL', `the export is ${bytes} bytes, larger than this client handles`);
          }
          size = Number(bytes);
          flags = reply.data.readUInt16BE(10);
        }
        // Other information (name, description, block sizes) is not needed for reads.
        continue;
      }
      if (reply.type === NBD_REP_ACK) break;
      // A server without NBD_OPT_GO still takes NBD_OPT_EXPORT_NAME (the only option Xen
      // Orchestra's client sends to XAPI hosts, so the one known to work there).
      if (reply.type === NBD_REP_ERR_UNSUP) return this.exportName(name);
      if ((reply.type & NBD_REP_FLAG_ERROR) !== 0) {
        this.sendOption(NBD_OPT_ABORT);
        throw this.goRefused(reply);
      }
      throw this.error('NBD_PROTOCOL', `the server answered NBD_OPT_GO with ${nbdReplyName(reply.type)}`);
    }
    if (size === undefined) {
      throw this.error(
        'NBD_PROTOCOL',
        'the server accepted the export without saying its size (NBD_INFO_EXPORT)',
      );
    }
    const socket = this.socket;
    const reader = this.reader;
    if (socket === undefined || reader === undefined) throw new Error('not connected');
    return { socket, reader, size, flags };
  }

  /**
   * NBD_OPT_EXPORT_NAME: the reply is the size and flags (then 124 zeros unless NO_ZEROES was
   * agreed); a server that does not serve the name can only close the connection.
   */
  private async exportName(name: Buffer): Promise<NegotiatedExport> {
    const reader = this.reader;
    const socket = this.socket;
    if (socket === undefined || reader === undefined) throw new Error('not connected');
    this.sendOption(NBD_OPT_EXPORT_NAME, name);
    let answer: Buffer;
    try {
      answer = await reader.read(10 + (this.noZeroes ? 0 : NBD_EXPORT_NAME_PADDING));
    } catch (error) {
      if (isNbdError(error, 'NBD_CONNECTION_LOST')) {
        throw this.error(
          'NBD_EXPORT_UNKNOWN',
          'the server closed the connection on NBD_OPT_EXPORT_NAME: it does not serve this export; the disk may be gone or the session expired: ask XAPI for the NBD info again',
          error,
        );
      }
      throw error;
    }
    const bytes = answer.readBigUInt64BE(0);
    if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw this.error('NBD_PROTOCOL', `the export is ${bytes} bytes, larger than this client handles`);
    }
    return { socket, reader, size: Number(bytes), flags: answer.readUInt16BE(8) };
  }

  private goRefused(reply: OptionReply): NbdError {
    const why = this.refusal(reply);
    switch (reply.type) {
      case NBD_REP_ERR_UNKNOWN:
        return this.error(
          'NBD_EXPORT_UNKNOWN',
          `the server does not serve this export (${why}); the disk may be gone or the session expired: ask XAPI for the NBD info again`,
        );
      case NBD_REP_ERR_TLS_REQD:
        return this.error('NBD_TLS_FAILED', `the server requires TLS (${why}) but no certificate was given`);
      case NBD_REP_ERR_POLICY:
        return this.error('NBD_HANDSHAKE_REFUSED', `the server's policy refuses this export (${why})`);
      default:
        return this.error('NBD_HANDSHAKE_REFUSED', `the server refused the export (${why})`);
    }
  }

  private error(code: NbdErrorCode, what: string, cause?: unknown): NbdError {
    return new NbdError(code, `NBD export ${this.safeName} on ${this.endpoint}: ${what}`, {
      endpoint: this.endpoint,
      exportName: this.safeName,
      ...(cause === undefined ? {} : { cause }),
    });
  }
}
