import { Readable } from 'node:stream';
import { chunkLenderOf, lendChunks } from '@haven/vhd';
import type { XapiError } from './xapi.error';

export type XapiTaskOutcome = 'success' | 'failure' | 'cancelled';

export interface XapiExportStreamOptions {
  /** The HTTP response body from the pool. */
  body: Readable;
  /** Settles with the XAPI task of the transfer. */
  task: Promise<unknown>;
  /** Asks XAPI to cancel the transfer task (best effort). */
  cancelTask: () => Promise<void>;
  /** Converts a failure (socket error, task failure) into the typed error the reader sees; `progress` (`after N bytes received`) goes into its message. */
  toError: (cause: unknown, progress?: string) => XapiError;
  /** How long to wait, after the last byte, for XAPI to report the task's outcome. */
  settleTimeoutMs: number;
  signal?: AbortSignal;
}

function outcomeOf(error: unknown): XapiTaskOutcome {
  const name = typeof error === 'object' && error !== null ? (error as { name?: unknown }).name : undefined;
  return name === 'Cancel' ? 'cancelled' : 'failure';
}

/**
 * A disk or VM export as a Node stream bound to its XAPI task. Bytes are pulled from the HTTP body
 * only as fast as the reader consumes them. The stream ends only once XAPI says the task
 * succeeded, so a transfer the host reports as failed is an error, never a short file. Destroying
 * the stream (or aborting its signal) before the end closes the socket and cancels the task.
 */
export class XapiExportStream extends Readable {
  /** The task's final state as XAPI reported it. */
  readonly taskOutcome: Promise<XapiTaskOutcome>;
  /** Bytes the pool sent so far: a failure names it, so a cut export is told from a refused one. */
  private received = 0;
  private finished = false;
  private readonly onAbort: () => void;

  constructor(private readonly options: XapiExportStreamOptions) {
    // a few chunks buffered ahead: fewer wake-ups per MiB, memory still bounded
    super({ highWaterMark: 1024 * 1024 });
    this.taskOutcome = options.task.then(
      (): XapiTaskOutcome => 'success',
      (error: unknown) => outcomeOf(error),
    );
    this.onAbort = () => {
      this.destroy(options.toError(options.signal?.reason ?? new DOMException('aborted', 'AbortError')));
    };
    if (options.signal?.aborted === true) queueMicrotask(this.onAbort);
    else options.signal?.addEventListener('abort', this.onAbort, { once: true });
    // Chunks are handed on as the body emits them, paused while this stream's buffer is full: no
    // async iterator in between, so no promise and no concatenated copy per chunk (at several GB a
    // disk, those made most of the worker's garbage; docs/benchmarks/jobs.md).
    const body = options.body;
    // The body's chunks go on as they are: if they are lent, so are this stream's.
    const lender = chunkLenderOf(body);
    if (lender !== undefined) lendChunks(this, lender);
    body.pause();
    body.on('data', (chunk: Buffer) => {
      this.received += chunk.length;
      if (this.destroyed) return;
      if (!this.push(chunk)) body.pause();
    });
    body.once('end', () => void this.end());
    body.on('error', (error: Error) => void this.fail(error));
    // A body closed without 'end' (socket reset) is a failure, not a short disk.
    body.once('close', () => {
      if (!body.readableEnded)
        void this.fail(
          Object.assign(new Error('the export connection closed before the end of the data'), {
            code: 'ERR_STREAM_PREMATURE_CLOSE',
          }),
        );
    });
  }

  override _read(): void {
    this.options.body.resume();
  }

  private async end(): Promise<void> {
    try {
      await this.settled();
    } catch (error) {
      await this.fail(error);
      return;
    }
    if (this.destroyed || this.finished) return;
    this.finished = true;
    this.push(null);
  }

  private async fail(error: unknown): Promise<void> {
    if (this.destroyed || this.finished) return;
    this.destroy(await this.explain(error));
  }

  /** Waits for the task: the body can end normally while XAPI still reports a failure. */
  private async settled(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.options.settleTimeoutMs);
    });
    try {
      const result = await Promise.race([this.options.task.then(() => 'done' as const), timeout]);
      // Some hosts settle the task a little after the last byte; data complete is what counts then.
      if (result === 'timeout') return;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A socket error often hides the real reason, which the task carries (VDI_IO_ERROR, …). */
  private async explain(error: unknown): Promise<XapiError> {
    const taskError = await Promise.race([
      this.options.task.then(
        () => undefined,
        (failure: unknown) => failure,
      ),
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 1000).unref()),
    ]);
    return this.options.toError(taskError ?? error, `after ${this.received} bytes received`);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.options.signal?.removeEventListener('abort', this.onAbort);
    const body = this.options.body;
    if (!body.destroyed) body.destroy();
    if (!this.finished) {
      this.finished = true;
      this.options.cancelTask().catch(() => undefined);
    }
    callback(error);
  }
}
