import * as net from 'node:net';
import { Readable } from 'node:stream';
import * as tls from 'node:tls';
import { lendChunks } from '@haven/vhd';
import { HttpBodyFraming } from './http-body.framing';
import { HttpProtocolError, parseHttpResponseHead, type HttpResponseHead } from './http-response.head';
import { ReadSlabs } from './read-slabs';

/**
 * The socket reads straight into slabs of this size (read-slabs.ts), each read into the part not
 * yet filled, and the body is handed on as views of them: no allocation per read and no copy
 * before the consumer. A read gets at least READ_ROOM bytes of room. The body's chunks are lent
 * (lent-chunks.ts of @haven/vhd): a slab whose chunks all came back is filled again.
 */
const SLAB_BYTES = 1024 * 1024;
const READ_ROOM = 64 * 1024;
/** Body bytes buffered ahead of the consumer before the socket is paused. */
const BODY_HIGH_WATER_MARK = 1024 * 1024;
/** What is kept of a refused response's body for the error message. */
const ERROR_BODY_BYTES = 512;

export interface HttpDownloadOptions {
  /** Accept a self-signed server certificate (an XCP-ng host's default one). */
  allowUnauthorized: boolean;
  /** No byte from the server for this long fails the download. */
  inactivityTimeoutMs: number;
  /** 3xx answers followed before giving up (default 3, as the xen-api client). */
  maxRedirects?: number;
  signal?: AbortSignal;
}

export interface HttpDownload {
  statusCode: number;
  headers: Record<string, string | undefined>;
  /** Where the answer came from, after redirects. */
  url: URL;
  /** The body, back-pressured down to the socket; an error if the connection ends it early. */
  body: Readable;
}

/** A server's answer other than 2xx (after redirects). */
export class HttpStatusError extends Error {
  override readonly name = 'HttpStatusError';
  constructor(
    readonly statusCode: number,
    readonly statusMessage: string,
    readonly url: string,
    readonly bodyStart: string,
  ) {
    super(
      `unexpected ${statusCode}${statusMessage === '' ? '' : ` ${statusMessage}`} from ${url}` +
        (bodyStart === '' ? '' : `: ${bodyStart}`),
    );
  }
}

/**
 * GET of a large resource (a disk or VM export) over HTTP/1.1 or HTTPS on a connection of its
 * own, read with Node's `onread` into large slabs: about half the CPU per byte of a generic HTTP
 * client, whose 64 KiB reads are each a fresh buffer and a parser call
 * (docs/benchmarks/xapi.md). Follows redirects (XAPI sends a host that does not hold the disk to
 * the one that does); the connection is closed when the body ends.
 */
export async function openHttpDownload(url: URL, options: HttpDownloadOptions): Promise<HttpDownload> {
  const maxRedirects = options.maxRedirects ?? 3;
  let target = url;
  for (let redirects = 0; ; redirects++) {
    const answer = await HttpDownloadConnection.open(target, options);
    const location = answer.head.headers['location'];
    if (answer.head.statusCode >= 300 && answer.head.statusCode < 400 && location !== undefined) {
      answer.discard();
      if (redirects >= maxRedirects) {
        throw new HttpProtocolError(`more than ${maxRedirects} redirects from ${redactedUrl(url)}`);
      }
      target = new URL(location, target);
      continue;
    }
    if (answer.head.statusCode < 200 || answer.head.statusCode >= 300) {
      const bodyStart = await answer.bodyStart(ERROR_BODY_BYTES);
      throw new HttpStatusError(
        answer.head.statusCode,
        answer.head.statusMessage,
        redactedUrl(target),
        bodyStart,
      );
    }
    return {
      statusCode: answer.head.statusCode,
      headers: answer.head.headers,
      url: target,
      body: answer.body,
    };
  }
}

/** The URL without its query (session ids and task refs stay out of messages). */
function redactedUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

/** One request on one connection: the head, then the body as a Readable. */
class HttpDownloadConnection {
  private readonly slabs = new ReadSlabs(SLAB_BYTES, READ_ROOM);
  private headBytes: Buffer = Buffer.alloc(0);
  private framing: HttpBodyFraming | undefined;
  private readonly bodyStream: BodyStream;
  private readonly socket: net.Socket;
  private headWaiter:
    | { resolve: (head: HttpResponseHead) => void; reject: (error: Error) => void }
    | undefined;
  private failure: Error | undefined;
  private readonly inactivityTimeoutMs: number;
  /** True while the socket is paused because the consumer has enough buffered. */
  private heldBack = false;
  head!: HttpResponseHead;

  private constructor(
    private readonly url: URL,
    options: HttpDownloadOptions,
  ) {
    this.bodyStream = new BodyStream(
      () => this.resumeReading(),
      () => this.close(),
    );
    lendChunks(this.bodyStream, this.slabs);
    this.inactivityTimeoutMs = options.inactivityTimeoutMs;
    const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const onread: net.OnReadOpts = {
      buffer: () => this.slabs.nextReadBuffer(),
      callback: (length) => this.onRead(length),
    };
    if (url.protocol === 'https:') {
      // `onread` works on TLS sockets since Node 15 (nodejs/node#35753); @types/node omits it.
      const tlsOptions: tls.ConnectionOptions & { onread: net.OnReadOpts } = {
        host,
        port,
        servername: net.isIP(host) === 0 ? host : undefined,
        rejectUnauthorized: !options.allowUnauthorized,
        // XenServer 6.5 and older only speak TLS 1.0 (the xen-api client allows it too)
        minVersion: 'TLSv1',
        onread,
      };
      this.socket = tls.connect(tlsOptions);
      this.socket.once('secureConnect', () => this.sendRequest());
    } else if (url.protocol === 'http:') {
      this.socket = net.connect({ host, port, onread });
      this.socket.once('connect', () => this.sendRequest());
    } else {
      throw new HttpProtocolError(`cannot download from a ${url.protocol} URL (http: or https: only)`);
    }
    this.socket.setNoDelay(true);
    this.socket.setTimeout(options.inactivityTimeoutMs, () => {
      this.fail(
        Object.assign(
          new Error(
            `no data from ${url.host} for ${options.inactivityTimeoutMs / 1000} s` +
              (this.framing === undefined
                ? ' (waiting for the response head)'
                : ` after ${this.framing.received} body bytes`),
          ),
          { code: 'ETIMEDOUT' },
        ),
      );
    });
    this.socket.on('error', (error) => this.fail(error));
    this.socket.on('close', () => this.onClose());
  }

  static async open(url: URL, options: HttpDownloadOptions): Promise<HttpDownloadConnection> {
    options.signal?.throwIfAborted();
    const connection = new HttpDownloadConnection(url, options);
    const signal = options.signal;
    const onAbort = (): void =>
      connection.fail(
        signal?.reason instanceof Error ? signal.reason : new DOMException('aborted', 'AbortError'),
      );
    signal?.addEventListener('abort', onAbort, { once: true });
    connection.bodyStream.once('close', () => signal?.removeEventListener('abort', onAbort));
    try {
      connection.head = await new Promise<HttpResponseHead>((resolve, reject) => {
        connection.headWaiter = { resolve, reject };
      });
    } catch (error) {
      signal?.removeEventListener('abort', onAbort);
      throw error;
    }
    return connection;
  }

  get body(): Readable {
    return this.bodyStream;
  }

  close(): void {
    if (!this.socket.destroyed) this.socket.destroy();
  }

  /** Drops the answer unread (a redirect): the connection closes. */
  discard(): void {
    this.bodyStream.destroy();
  }

  /** Up to `limit` bytes of the body, as text (for an error message), then the connection closes. */
  async bodyStart(limit: number): Promise<string> {
    const parts: Buffer[] = [];
    let size = 0;
    try {
      for await (const part of this.bodyStream as AsyncIterable<Buffer>) {
        parts.push(part);
        size += part.length;
        if (size >= limit) break;
      }
    } catch {
      // the status says enough
    } finally {
      this.close();
    }
    return Buffer.concat(parts).toString('utf8', 0, Math.min(size, limit)).replace(/\s+/g, ' ').trim();
  }

  private sendRequest(): void {
    const host = this.url.host;
    this.socket.write(
      `GET ${this.url.pathname}${this.url.search} HTTP/1.1\r\nHost: ${host}\r\nAccept: */*\r\nConnection: close\r\nUser-Agent: Haven\r\n\r\n`,
      'latin1',
    );
  }

  /** A read landed where the slabs said; false pauses the socket. */
  private onRead(length: number): boolean {
    const bytes = this.slabs.filled(length);
    let wantsMore: boolean;
    try {
      wantsMore = this.framing === undefined ? this.onHeadBytes(bytes) : this.onBodyBytes(bytes);
    } catch (error) {
      this.fail(error instanceof Error ? error : new Error(String(error)));
      return false;
    }
    if (!wantsMore && !this.socket.destroyed) {
      // Paused for the consumer, not waiting on the server: silence is not the server's.
      this.heldBack = true;
      this.socket.setTimeout(0);
    }
    return wantsMore;
  }

  /** The consumer wants more: read again, and count the server's silence again. */
  private resumeReading(): void {
    if (this.heldBack) {
      this.heldBack = false;
      if (!this.socket.destroyed) this.socket.setTimeout(this.inactivityTimeoutMs);
    }
    this.socket.resume();
  }

  private onHeadBytes(bytes: Buffer): boolean {
    this.headBytes =
      this.headBytes.length === 0 ? Buffer.from(bytes) : Buffer.concat([this.headBytes, bytes]);
    const head = parseHttpResponseHead(this.headBytes);
    if (head === undefined) return true;
    this.framing = new HttpBodyFraming(head);
    const rest = this.headBytes.subarray(head.length);
    this.headBytes = Buffer.alloc(0);
    const waiter = this.headWaiter;
    this.headWaiter = undefined;
    waiter?.resolve(head);
    return this.onBodyBytes(rest);
  }

  private onBodyBytes(bytes: Buffer): boolean {
    const framing = this.framing;
    if (framing === undefined) return true;
    let wantsMore = true;
    framing.take(bytes, (data) => {
      this.slabs.lend(data);
      wantsMore = this.bodyStream.push(data) && wantsMore;
    });
    if (framing.done) {
      this.bodyStream.push(null);
      this.close();
      return false;
    }
    return wantsMore;
  }

  private onClose(): void {
    // A failure, or the consumer closed the body: nothing left to tell.
    if (this.failure !== undefined || this.bodyStream.destroyed) return;
    const framing = this.framing;
    if (framing === undefined) {
      this.fail(
        Object.assign(new Error(`${this.url.host} closed the connection before the response head`), {
          code: 'ECONNRESET',
        }),
      );
      return;
    }
    if (framing.done) return;
    try {
      framing.closed();
      this.bodyStream.push(null);
    } catch (error) {
      this.fail(error as Error);
    }
  }

  private fail(error: Error): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    const waiter = this.headWaiter;
    this.headWaiter = undefined;
    if (waiter !== undefined) {
      // No one holds the body yet: the error goes to the caller of open().
      waiter.reject(error);
      this.bodyStream.destroy();
    } else if (!this.bodyStream.destroyed && !this.bodyStream.readableEnded) {
      this.bodyStream.destroy(error);
    }
    this.close();
  }
}

/** The body: resumes the socket when the consumer wants more; closing it closes the connection. */
class BodyStream extends Readable {
  constructor(
    private readonly wantMore: () => void,
    private readonly closeConnection: () => void,
  ) {
    super({ highWaterMark: BODY_HIGH_WATER_MARK });
  }

  override _read(): void {
    this.wantMore();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.closeConnection();
    callback(error);
  }
}
