import { HttpProtocolError, type HttpResponseHead } from './http-response.head';

/** How the body's end is known (RFC 9112 §6.3). */
export type HttpBodyFramingKind = 'length' | 'chunked' | 'close';

/** The longest chunk-size line accepted (size, extensions, CRLF). */
const MAX_CHUNK_LINE = 4096;

type ChunkedState =
  | { at: 'size'; line: string }
  | { at: 'data'; left: number }
  | { at: 'data-end'; seen: number }
  | { at: 'trailer'; line: string };

/**
 * Cuts a response body out of the bytes that follow the head, as views on those bytes (no copy):
 * by Content-Length, by chunked transfer coding, or up to the connection's close.
 */
export class HttpBodyFraming {
  readonly kind: HttpBodyFramingKind;
  /** Body bytes handed on so far. */
  received = 0;
  private remaining: number;
  private chunked: ChunkedState = { at: 'size', line: '' };
  private complete = false;

  constructor(head: Pick<HttpResponseHead, 'headers'>) {
    const coding = head.headers['transfer-encoding'];
    const length = head.headers['content-length'];
    if (coding !== undefined) {
      if (!/(^|,)\s*chunked\s*$/i.test(coding)) {
        throw new HttpProtocolError(`unsupported transfer-encoding "${coding}" (only chunked is understood)`);
      }
      this.kind = 'chunked';
      this.remaining = Infinity;
    } else if (length !== undefined) {
      if (!/^\d{1,16}$/.test(length)) throw new HttpProtocolError(`invalid content-length "${length}"`);
      this.kind = 'length';
      this.remaining = Number(length);
      this.complete = this.remaining === 0;
    } else {
      this.kind = 'close';
      this.remaining = Infinity;
    }
  }

  /** True once the framing says the body ended (never for a body delimited by the close). */
  get done(): boolean {
    return this.complete;
  }

  /** For a Content-Length body, its declared size. */
  get declaredLength(): number | undefined {
    return this.kind === 'length' ? this.received + this.remaining : undefined;
  }

  /**
   * Hands the body bytes found in `bytes` to `emit`, in order, as views. Bytes past the body's
   * end are ignored (the connection is not reused).
   */
  take(bytes: Buffer, emit: (data: Buffer) => void): void {
    if (this.complete || bytes.length === 0) return;
    if (this.kind === 'close') {
      this.received += bytes.length;
      emit(bytes);
      return;
    }
    if (this.kind === 'length') {
      const part = bytes.length <= this.remaining ? bytes : bytes.subarray(0, this.remaining);
      this.remaining -= part.length;
      this.received += part.length;
      this.complete = this.remaining === 0;
      emit(part);
      return;
    }
    this.takeChunked(bytes, emit);
  }

  /** The connection closed: fine for a close-delimited body; otherwise the body was cut short. */
  closed(): void {
    if (this.kind === 'close') {
      this.complete = true;
      return;
    }
    if (this.complete) return;
    const expected =
      this.kind === 'length'
        ? `${this.received + this.remaining} bytes announced by content-length`
        : 'the last chunk of the chunked body';
    throw Object.assign(
      new Error(`the connection closed after ${this.received} body bytes, before ${expected}`),
      { code: 'ERR_STREAM_PREMATURE_CLOSE' },
    );
  }

  private takeChunked(bytes: Buffer, emit: (data: Buffer) => void): void {
    let offset = 0;
    while (offset < bytes.length && !this.complete) {
      const state = this.chunked;
      if (state.at === 'data') {
        const part = Math.min(state.left, bytes.length - offset);
        emit(bytes.subarray(offset, offset + part));
        this.received += part;
        offset += part;
        state.left -= part;
        if (state.left === 0) this.chunked = { at: 'data-end', seen: 0 };
        continue;
      }
      if (state.at === 'data-end') {
        const expected = state.seen === 0 ? 0x0d : 0x0a;
        if (bytes[offset] !== expected) {
          throw new HttpProtocolError(
            `chunk of the chunked body not followed by CRLF (at body byte ${this.received})`,
          );
        }
        offset += 1;
        state.seen += 1;
        if (state.seen === 2) this.chunked = { at: 'size', line: '' };
        continue;
      }
      // A size or trailer line: up to its LF.
      const newline = bytes.indexOf(0x0a, offset);
      const end = newline < 0 ? bytes.length : newline;
      state.line += bytes.toString('latin1', offset, end);
      offset = newline < 0 ? bytes.length : newline + 1;
      if (state.line.length > MAX_CHUNK_LINE) {
        throw new HttpProtocolError(
          `a chunk-size line of the chunked body is longer than ${MAX_CHUNK_LINE} bytes`,
        );
      }
      if (newline < 0) continue;
      const line = state.line.endsWith('\r') ? state.line.slice(0, -1) : state.line;
      if (state.at === 'trailer') {
        if (line === '') this.complete = true;
        else this.chunked = { at: 'trailer', line: '' };
        continue;
      }
      const size = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
      if (size === null) {
        throw new HttpProtocolError(`invalid chunk-size line "${line.slice(0, 40)}" in the chunked body`);
      }
      const left = Number.parseInt(size.at(1) ?? '', 16);
      this.chunked = left === 0 ? { at: 'trailer', line: '' } : { at: 'data', left };
    }
  }
}
