import type { Duplex } from 'node:stream';

interface PendingRead {
  target: Buffer;
  filled: number;
  resolve: (buffer: Buffer) => void;
  reject: (error: Error) => void;
}

/**
 * Exact-length reads from a socket, one at a time, copied straight into the caller's buffer (a
 * pooled 2 MiB block needs no intermediate copy). At most `highWaterMark` bytes are held while
 * nobody reads: past it the socket is paused, so a slow consumer slows the sender (TCP back-pressure).
 */
export class SocketByteReader {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private pending: PendingRead | undefined;
  private ended: Error | undefined;
  private detached = false;

  constructor(
    private readonly socket: Duplex,
    /** Turns "the socket ended" (with its error, if any) into the error reads reject with. */
    private readonly endedError: (cause?: Error) => Error,
    private readonly highWaterMark = 1024 * 1024,
  ) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
  }

  /** The next `length` bytes, in a fresh buffer. */
  read(length: number): Promise<Buffer> {
    return this.readInto(Buffer.allocUnsafe(length));
  }

  /** Fills `target` entirely with the next bytes. */
  readInto(target: Buffer): Promise<Buffer> {
    if (this.pending !== undefined) return Promise.reject(new Error('a read is already in progress'));
    if (target.length === 0) return Promise.resolve(target);
    return new Promise<Buffer>((resolve, reject) => {
      this.pending = { target, filled: 0, resolve, reject };
      this.drain();
    });
  }

  /** Bytes received and not read yet. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /**
   * Stops listening (before a TLS upgrade of the same socket). Fails if bytes are left over: after
   * NBD_OPT_STARTTLS's acknowledgement nothing but the TLS handshake may follow.
   */
  detach(): void {
    if (this.pending !== undefined) throw new Error('cannot detach during a read');
    this.detached = true;
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
    this.socket.pause();
  }

  private readonly onData = (chunk: Buffer): void => {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.drain();
  };

  private readonly onEnd = (): void => {
    this.ended ??= this.endedError();
    this.drain();
  };

  private readonly onError = (error: Error): void => {
    this.ended ??= this.endedError(error);
    this.drain();
  };

  private drain(): void {
    const pending = this.pending;
    if (pending !== undefined) {
      while (pending.filled < pending.target.length && this.chunks.length > 0) {
        const chunk = this.chunks[0];
        const take = Math.min(chunk.length, pending.target.length - pending.filled);
        chunk.copy(pending.target, pending.filled, 0, take);
        pending.filled += take;
        this.buffered -= take;
        if (take === chunk.length) this.chunks.shift();
        else this.chunks[0] = chunk.subarray(take);
      }
      if (pending.filled === pending.target.length) {
        this.pending = undefined;
        pending.resolve(pending.target);
      } else if (this.ended !== undefined) {
        this.pending = undefined;
        pending.reject(this.ended);
      }
    }
    if (this.detached) return;
    if (this.buffered >= this.highWaterMark) this.socket.pause();
    else if (this.socket.isPaused()) this.socket.resume();
  }
}
