import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SimulatedPool } from '../model/simulated-pool';
import type { XapiValue } from '../rpc/xapi-value';
import { toXapiFailure, XapiFailure } from '../xapi.failure';

function statusFor(failure: XapiFailure): number {
  switch (failure.code) {
    case 'SESSION_INVALID':
    case 'SESSION_AUTHENTICATION_FAILED':
      return 401;
    case 'HANDLE_INVALID':
    case 'UUID_INVALID':
      return 404;
    case 'VDI_IN_USE':
    case 'OPERATION_NOT_ALLOWED':
    case 'OPERATION_BLOCKED':
      return 409;
    case 'FIELD_TYPE_ERROR':
      return 400;
    default:
      return 500;
  }
}

/**
 * One XAPI HTTP transfer (export or import): its session, the client's task (`task_id`) that
 * must be settled whatever happens, progress reports, and cancellation by `task.cancel` or by
 * the client going away.
 */
export class HttpTransfer {
  readonly task: string | undefined;
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private lastProgress = -1;

  constructor(
    readonly pool: SimulatedPool,
    readonly request: IncomingMessage,
    readonly response: ServerResponse,
    readonly url: URL,
  ) {
    this.signal = this.controller.signal;
    const task = url.searchParams.get('task_id') ?? undefined;
    this.task = task === undefined || task === '' ? undefined : task;
    response.once('close', () => {
      if (!response.writableFinished)
        this.controller.abort(new XapiFailure('VDI_IO_ERROR', ['the client closed the connection']));
    });
  }

  query(name: string): string | undefined {
    const value = this.url.searchParams.get(name);
    return value === null || value === '' ? undefined : value;
  }

  /** Session and task checks; the task then follows the transfer's fate. */
  begin(): void {
    const cookie = /(?:^|;\s*)session_id=([^;]+)/.exec(this.request.headers.cookie ?? '')?.[1];
    this.pool.checkSession(this.query('session_id') ?? cookie);
    if (this.task !== undefined) {
      if (!this.pool.store.has('task', this.task)) throw XapiFailure.handleInvalid('task', this.task);
      const signal = this.pool.tasks.signal(this.task);
      if (signal.aborted) throw new XapiFailure('TASK_CANCELLED', [this.task]);
      signal.addEventListener('abort', () => this.controller.abort(signal.reason), { once: true });
    }
  }

  progress(done: number, total: number): void {
    if (this.task === undefined || total <= 0) return;
    const value = Math.floor((done / total) * 20) / 20;
    if (value === this.lastProgress) return;
    this.lastProgress = value;
    this.pool.tasks.progress(this.task, value);
  }

  succeed(result: XapiValue = ''): void {
    if (this.task !== undefined) this.pool.tasks.succeed(this.task, result);
  }

  /** Settles the task as failed and answers with an HTTP error if nothing was sent yet. */
  fail(error: unknown): void {
    const failure =
      this.signal.aborted && !(error instanceof XapiFailure)
        ? toXapiFailure(this.signal.reason)
        : toXapiFailure(error);
    if (this.task !== undefined) this.pool.tasks.fail(this.task, failure);
    if (!this.response.headersSent && !this.response.destroyed) {
      const body = `${failure.errorDescription.join(' ')}\n`;
      this.response.writeHead(statusFor(failure), {
        'content-type': 'text/plain',
        'content-length': Buffer.byteLength(body),
      });
      this.response.end(body);
    } else if (this.request.method === 'PUT') {
      // An upload that failed midway: the task carries the error; the rest of the body is drained.
      this.request.resume();
      if (!this.response.writableEnded) this.response.end();
    } else if (!this.response.writableFinished) {
      // A download cut short: the client sees a truncated body and a failed task.
      this.response.destroy();
    }
  }
}
