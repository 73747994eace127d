import { getMaxListeners, setMaxListeners } from 'node:events';
import { Readable, Transform, pipeline } from 'node:stream';
import type {
  GetOptions,
  LeaseOptions,
  ListOptions,
  ListPage,
  ObjectStat,
  OperationOptions,
  PutOptions,
  RemoteCapacity,
  RemoteFeatures,
  RemoteLease,
  RemoteStore,
  ReplayableBody,
} from './remote.contract';
import { isReplayableBody } from './remote.contract';
import type { DriverContext, RemoteDriver } from './remote.driver';
import {
  DriverError,
  REMOTE_ERROR_ADVICE,
  RemoteError,
  classifyErrno,
  isRemoteError,
  type ErrorClassification,
  type RemoteErrorCode,
} from './remote.errors';
import { keyProblem, prefixProblem } from './remote-key';
import { acquireRemoteLease } from './remote.lease';
import { DEFAULT_RETRY_POLICY, backoffDelay, sleep, type RetryPolicy } from './retry.policy';

export interface RemoteOptions {
  /** Operator-facing name, in every error message. */
  name: string;
  /** Secret values (keys, passwords) scrubbed from every message, whatever a server echoes. */
  secrets?: readonly string[];
  retry?: Partial<RetryPolicy>;
  /** Per attempt of a metadata operation (stat, list, delete, copy, …) and of opening a stream. */
  timeoutMs?: number;
  /** A data stream (put body, get body) that moves no byte for this long fails as TRANSIENT. */
  idleTimeoutMs?: number;
  /** getBuffer() refuses objects larger than this (it holds them in memory). */
  maxBufferBytes?: number;
}

const LIST_LIMIT_MAX = 1000;
/** missing() stats this many keys at once unless the driver asks for more (RemoteDriver.statsInFlight). */
const EXISTENCE_CHECKS_AT_ONCE = 16;
/** missing() checks keys in batches of this many, each with its own retries after TRANSIENT failures. */
const EXISTENCE_BATCH = 256;

/** A cause that can be logged safely: the native error's name, code and scrubbed message only. */
export interface ScrubbedCause {
  name: string;
  code?: string;
  message: string;
}

class TimeoutSignalReason extends Error {
  override readonly name = 'TimeoutError';
}

/**
 * Implements RemoteStore over a RemoteDriver: validates keys, applies timeouts and abort signals,
 * retries TRANSIENT failures with exponential backoff and jitter, and turns every failure into a
 * RemoteError naming the remote, the operation and the key, without secrets.
 */
export class Remote implements RemoteStore {
  readonly name: string;
  readonly type: string;
  private readonly retryPolicy: RetryPolicy;
  private readonly timeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly maxBufferBytes: number;
  private readonly secrets: readonly string[];

  constructor(
    protected readonly driver: RemoteDriver,
    options: RemoteOptions,
  ) {
    this.name = options.name;
    this.type = driver.type;
    this.retryPolicy = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 120_000;
    this.maxBufferBytes = options.maxBufferBytes ?? 256 * 1024 * 1024;
    // Longest first, so a secret containing another is scrubbed whole.
    this.secrets = (options.secrets ?? []).filter((s) => s.length >= 4).sort((a, b) => b.length - a.length);
  }

  /** Read from the driver each time: some learn what their server supports on first use. */
  get features(): RemoteFeatures {
    return this.driver.features;
  }

  get writesInFlight(): number {
    return Math.max(1, Math.floor(this.driver.writesInFlight ?? 1));
  }

  async put(key: string, body: Buffer | Readable | ReplayableBody, options: PutOptions = {}): Promise<void> {
    this.checkKey('put', key);
    if (Buffer.isBuffer(body)) {
      await this.run(
        'put',
        key,
        options.signal,
        (context) => this.driver.put(key, body, { ...context, size: body.length }),
        // Room for the body at a slow 64 KiB/s on top of the usual timeout.
        { retry: true, timeoutMs: this.timeoutMs + Math.ceil(body.length / 64) },
      );
      return;
    }
    // A replayable body gets a new stream per attempt and is retried like a Buffer; a stream can be
    // consumed once: no retry, an idle timer instead of a whole-operation timeout.
    const replayable = isReplayableBody(body);
    await this.run(
      'put',
      key,
      options.signal,
      async (context, onIdle) => {
        const watched = watchIdle(replayable ? body.open() : body, this.idleTimeoutMs, onIdle);
        try {
          await this.driver.put(key, watched, { ...context, size: replayable ? body.size : options.size });
        } finally {
          if (!watched.destroyed && !watched.readableEnded) watched.destroy();
        }
      },
      replayable
        ? { retry: true, timeoutMs: this.timeoutMs + Math.ceil(body.size / 64) }
        : { retry: false, timeoutMs: 0 },
    );
  }

  async putIfAbsent(key: string, body: Buffer, options: OperationOptions = {}): Promise<boolean> {
    this.checkKey('putIfAbsent', key);
    let attempts = 0;
    return this.run(
      'putIfAbsent',
      key,
      options.signal,
      async (context) => {
        attempts += 1;
        const created = await this.driver.putIfAbsent(key, body, context);
        if (created || attempts === 1) return created;
        // A retry after a failure whose reply was lost: the object may be ours. Identical content
        // counts as ours (callers that need to tell creators apart put a unique token in the body).
        const existing = await this.readWhole(key, context);
        return existing.equals(body);
      },
      { retry: true },
    );
  }

  async stageIfAbsent(key: string, body: Buffer, options: OperationOptions = {}): Promise<boolean> {
    const stage = this.driver.stageIfAbsent?.bind(this.driver);
    if (stage === undefined) return this.putIfAbsent(key, body, options);
    this.checkKey('stageIfAbsent', key);
    return this.run('stageIfAbsent', key, options.signal, (context) => stage(key, body, context), {
      retry: true,
      timeoutMs: this.timeoutMs + Math.ceil(body.length / 64),
    });
  }

  async flush(options: OperationOptions = {}): Promise<void> {
    const flush = this.driver.flush?.bind(this.driver);
    if (flush === undefined) return;
    // A flush may wait for the disk to write back what was staged: minutes on a slow one.
    await this.run('flush', undefined, options.signal, (context) => flush(context), {
      retry: true,
      timeoutMs: this.timeoutMs * 10,
    });
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    this.checkKey('get', key);
    const range = options.range;
    this.checkRange('get', key, range);
    if (range !== undefined && range.start === range.end) {
      await this.stat(key, options);
      return Readable.from([]);
    }
    const source = await this.run(
      'get',
      key,
      options.signal,
      (context) => this.driver.get(key, { ...context, range }),
      {
        retry: true,
      },
    );
    return this.guardStream(source, 'get', key, options.signal);
  }

  async getBuffer(key: string, options: GetOptions = {}): Promise<Buffer> {
    this.checkKey('getBuffer', key);
    const range = options.range;
    this.checkRange('getBuffer', key, range);
    if (range !== undefined && range.start === range.end) {
      await this.stat(key, options);
      return Buffer.alloc(0);
    }
    // Buffered whole, so a failure in the middle of the body can be retried too.
    return this.run(
      'get',
      key,
      options.signal,
      async (context, onIdle) => {
        const readInOne = this.driver.getBuffer?.bind(this.driver);
        if (readInOne !== undefined) {
          const reading = setTimeout(onIdle, this.timeoutMs);
          try {
            return await readInOne(key, { ...context, range, maxBytes: this.maxBufferBytes });
          } finally {
            clearTimeout(reading);
          }
        }
        // Opening gets the usual timeout; the body then the idle timeout, as a stream would.
        const opening = setTimeout(onIdle, this.timeoutMs);
        let source: Readable;
        try {
          source = await this.driver.get(key, { ...context, range });
        } finally {
          clearTimeout(opening);
        }
        return this.collect(watchIdle(source, this.idleTimeoutMs, onIdle), context.signal);
      },
      { retry: true, timeoutMs: 0 },
    );
  }

  async stat(key: string, options: OperationOptions = {}): Promise<ObjectStat> {
    this.checkKey('stat', key);
    return this.run('stat', key, options.signal, (context) => this.driver.stat(key, context), {
      retry: true,
    });
  }

  async exists(key: string, options: OperationOptions = {}): Promise<boolean> {
    try {
      await this.stat(key, options);
      return true;
    } catch (error) {
      if (isRemoteError(error, 'NOT_FOUND')) return false;
      throw error;
    }
  }

  /**
   * exists() for many keys in one go: the keys of `keys` that hold no object. They are stat'ed
   * the driver's statsInFlight (else EXISTENCE_CHECKS_AT_ONCE) at a time in batches of
   * EXISTENCE_BATCH, each batch one operation
   * (one abort listener, one timer that fires when no key answered for `timeoutMs`, retries of
   * TRANSIENT failures for the keys not answered yet) instead of one of each per key.
   */
  async missing(keys: Iterable<string>, options: OperationOptions = {}): Promise<Set<string>> {
    const unique = [...new Set(keys)];
    for (const key of unique) this.checkKey('exists', key);
    const absent = new Set<string>();
    for (let start = 0; start < unique.length; start += EXISTENCE_BATCH) {
      const batch = unique.slice(start, start + EXISTENCE_BATCH);
      const answered = new Set<string>();
      await this.run(
        'exists',
        undefined,
        options.signal,
        (context, onIdle) => this.statEach(batch, answered, absent, context, onIdle),
        { retry: true, timeoutMs: 0 },
        `(a batch of ${batch.length} keys)`,
      );
    }
    return absent;
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    const problem = prefixProblem(prefix);
    if (problem !== undefined) throw this.invalid('list', prefix, problem);
    const limit = options.limit ?? LIST_LIMIT_MAX;
    if (!Number.isInteger(limit) || limit < 1 || limit > LIST_LIMIT_MAX)
      throw this.invalid('list', prefix, `the page size ${limit} is outside 1..${LIST_LIMIT_MAX}`);
    return this.run(
      'list',
      prefix,
      options.signal,
      (context) => this.driver.list(prefix, { ...context, limit, cursor: options.cursor }),
      { retry: true },
    );
  }

  async *listAll(prefix: string, options: OperationOptions = {}): AsyncIterable<ObjectStat> {
    let cursor: string | undefined;
    do {
      const page = await this.list(prefix, { signal: options.signal, cursor });
      yield* page.objects;
      cursor = page.cursor;
    } while (cursor !== undefined);
  }

  async delete(key: string, options: OperationOptions = {}): Promise<void> {
    this.checkKey('delete', key);
    try {
      await this.run('delete', key, options.signal, (context) => this.driver.delete(key, context), {
        retry: true,
      });
    } catch (error) {
      if (!isRemoteError(error, 'NOT_FOUND')) throw error;
    }
  }

  async copy(fromKey: string, toKey: string, options: OperationOptions = {}): Promise<void> {
    this.checkKey('copy', fromKey);
    this.checkKey('copy', toKey);
    await this.run(
      'copy',
      fromKey,
      options.signal,
      (context) => this.driver.copy(fromKey, toKey, context),
      // A server-side copy of a large object takes a while: ten times the usual timeout.
      { retry: true, timeoutMs: this.timeoutMs * 10 },
      `to "${toKey}"`,
    );
  }

  async rename(fromKey: string, toKey: string, options: OperationOptions = {}): Promise<void> {
    this.checkKey('rename', fromKey);
    this.checkKey('rename', toKey);
    if (fromKey === toKey) {
      await this.stat(fromKey, options);
      return;
    }
    const rename = this.driver.rename?.bind(this.driver);
    if (rename === undefined) {
      await this.copy(fromKey, toKey, options);
      await this.delete(fromKey, options);
      return;
    }
    await this.run(
      'rename',
      fromKey,
      options.signal,
      (context) => rename(fromKey, toKey, context),
      { retry: true },
      `to "${toKey}"`,
    );
  }

  async capacity(options: OperationOptions = {}): Promise<RemoteCapacity> {
    return this.run('capacity', undefined, options.signal, (context) => this.driver.capacity(context), {
      retry: true,
    });
  }

  async acquireLease(name: string, options: LeaseOptions): Promise<RemoteLease> {
    return acquireRemoteLease(this, name, options);
  }

  async close(): Promise<void> {
    try {
      await this.driver.close();
    } catch (error) {
      throw this.wrap(error, 'close', undefined, {});
    }
  }

  /**
   * Runs one operation with retries. Each attempt gets a signal aborted by the caller's signal or
   * by the attempt's timeout; the attempt is abandoned at once even if the driver ignores it.
   */
  private async run<T>(
    operation: string,
    key: string | undefined,
    signal: AbortSignal | undefined,
    /** `onIdle` times the attempt out, as having made no progress for `ms` (the idle timeout by default). */
    attempt: (context: DriverContext, onIdle: (ms?: number) => void) => Promise<T>,
    options: { retry: boolean; timeoutMs?: number },
    detail?: string,
  ): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    for (let attemptNumber = 1; ; attemptNumber++) {
      if (signal?.aborted) throw this.wrap(signal.reason, operation, key, { aborted: true, detail });
      const controller = new AbortController();
      let timedOut: number | undefined;
      const onAbort = (): void => controller.abort(signal?.reason);
      if (signal !== undefined) allowConcurrentOperations(signal);
      signal?.addEventListener('abort', onAbort, { once: true });
      const timeout = (ms: number): void => {
        timedOut = ms;
        controller.abort(new TimeoutSignalReason(`no progress for ${ms} ms`));
      };
      const timer = timeoutMs > 0 ? setTimeout(() => timeout(timeoutMs), timeoutMs) : undefined;
      try {
        return await abandonOnAbort(
          attempt({ signal: controller.signal }, (ms = this.idleTimeoutMs) => timeout(ms)),
          controller.signal,
        );
      } catch (error) {
        const wrapped = this.wrap(error, operation, key, {
          aborted: signal?.aborted === true,
          timedOutMs: timedOut,
          attempts: attemptNumber,
          detail,
        });
        if (!options.retry || !wrapped.retryable || attemptNumber > this.retryPolicy.retries) throw wrapped;
        try {
          await sleep(backoffDelay(this.retryPolicy, attemptNumber), signal);
        } catch (abortReason) {
          throw this.wrap(abortReason, operation, key, { aborted: true, detail });
        }
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      }
    }
  }

  /**
   * One attempt of missing() over `keys`: stats those not `answered` by an earlier attempt, adding
   * each answer to `answered` (and to `absent` when NOT_FOUND), and fails on the first other error.
   */
  private async statEach(
    keys: readonly string[],
    answered: Set<string>,
    absent: Set<string>,
    context: DriverContext,
    onIdle: (ms?: number) => void,
  ): Promise<void> {
    const queue = keys.filter((key) => !answered.has(key));
    // Every lane's driver call may listen on the attempt's signal.
    allowConcurrentOperations(context.signal);
    let failed = false;
    const silence = setTimeout(() => onIdle(this.timeoutMs), this.timeoutMs);
    const lane = async (): Promise<void> => {
      // An attempt that failed or was abandoned (timeout, abort) stops taking keys.
      for (let key = queue.pop(); key !== undefined; key = queue.pop()) {
        if (failed || context.signal.aborted) return;
        try {
          await this.driver.stat(key, context);
        } catch (error) {
          const wrapped = this.wrap(error, 'exists', key, {});
          if (wrapped.code !== 'NOT_FOUND') {
            failed = true;
            throw wrapped;
          }
          absent.add(key);
        }
        answered.add(key);
        silence.refresh();
      }
    };
    try {
      const lanes = Math.max(1, Math.floor(this.driver.statsInFlight ?? EXISTENCE_CHECKS_AT_ONCE));
      await Promise.all(Array.from({ length: Math.min(lanes, queue.length) }, lane));
    } finally {
      clearTimeout(silence);
    }
  }

  /** Turns anything thrown into a RemoteError that names the remote and key, without secrets. */
  protected wrap(
    error: unknown,
    operation: string,
    key: string | undefined,
    context: { aborted?: boolean; timedOutMs?: number; attempts?: number; detail?: string },
  ): RemoteError {
    if (error instanceof RemoteError && error.remote === this.name) return error;
    let classification: ErrorClassification;
    if (context.aborted === true) classification = { code: 'ABORTED', reason: 'cancelled by the caller' };
    else if (context.timedOutMs !== undefined)
      classification = { code: 'TRANSIENT', reason: `timed out (no progress for ${context.timedOutMs} ms)` };
    else if (error instanceof DriverError) classification = { code: error.code, reason: error.reason };
    else if (error instanceof RemoteError) classification = { code: error.code, reason: error.message };
    else
      classification = this.driver.classifyError(error) ??
        classifyErrno(error) ?? { code: 'UNKNOWN', reason: describe(error) };
    const target = key === undefined ? '' : ` "${key}"`;
    const detail = context.detail === undefined ? '' : ` ${context.detail}`;
    const tries =
      classification.code === 'TRANSIENT' && context.attempts !== undefined && context.attempts > 1
        ? ` after ${context.attempts} attempts`
        : '';
    const message = this.scrub(
      `Remote "${this.name}" (${this.type}): ${operation}${target}${detail} failed${tries}: ${classification.reason}. ${REMOTE_ERROR_ADVICE[classification.code]}`,
    );
    return new RemoteError(classification.code, this.name, message, key, { cause: this.scrubCause(error) });
  }

  private scrub(text: string): string {
    let result = text;
    for (const secret of this.secrets) result = result.split(secret).join('[redacted]');
    return result;
  }

  /** SDK errors carry requests, headers and sometimes credentials: keep only what is safe to log. */
  private scrubCause(error: unknown): ScrubbedCause {
    if (error instanceof Error) {
      const code = (error as { code?: unknown }).code;
      return {
        name: error.name,
        ...(typeof code === 'string' ? { code } : {}),
        message: this.scrub(error.message),
      };
    }
    return { name: typeof error, message: this.scrub(describe(error)) };
  }

  private checkKey(operation: string, key: string): void {
    const problem = keyProblem(key);
    if (problem !== undefined) throw this.invalid(operation, key, problem);
  }

  private checkRange(operation: string, key: string, range: GetOptions['range']): void {
    if (range === undefined) return;
    const { start, end } = range;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start)
      throw this.invalid(operation, key, `the range ${start}-${end} is invalid (need 0 <= start <= end)`);
  }

  private invalid(operation: string, key: string, reason: string): RemoteError {
    return this.wrap(new DriverError('INVALID_ARGUMENT', reason), operation, key, {});
  }

  /** The caller's stream: back-pressured, idle-timed, abortable, failing only with RemoteErrors. */
  private guardStream(
    source: Readable,
    operation: string,
    key: string,
    signal: AbortSignal | undefined,
  ): Readable {
    let idleTimedOut = false;
    let aborted = false;
    const watched = watchIdle(source, this.idleTimeoutMs, () => {
      idleTimedOut = true;
      source.destroy(new TimeoutSignalReason('idle'));
    });
    const onAbort = (): void => {
      aborted = true;
      source.destroy(new Error('aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const wrap = (error: unknown): RemoteError =>
      this.wrap(error, operation, key, {
        aborted,
        timedOutMs: idleTimedOut ? this.idleTimeoutMs : undefined,
      });
    // An async generator pulls one chunk at a time (back-pressure); a consumer that stops early
    // returns the generator, which destroys the backend's stream.
    async function* guarded(): AsyncGenerator<Buffer> {
      try {
        for await (const chunk of watched) yield chunk as Buffer;
      } catch (error) {
        throw wrap(error);
      } finally {
        signal?.removeEventListener('abort', onAbort);
        if (!source.destroyed) source.destroy();
      }
    }
    return Readable.from(guarded(), { objectMode: false, highWaterMark: 1024 * 1024 });
  }

  private async collect(source: Readable, signal: AbortSignal): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let size = 0;
    const onAbort = (): void => {
      source.destroy(signal.reason as Error);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const chunk of source) {
        const buffer = chunk as Buffer;
        size += buffer.length;
        if (size > this.maxBufferBytes) {
          source.destroy();
          throw new DriverError(
            'INVALID_ARGUMENT',
            `the object is larger than ${this.maxBufferBytes} bytes; read it as a stream with get()`,
          );
        }
        chunks.push(buffer);
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
    return Buffer.concat(chunks, size);
  }

  private async readWhole(key: string, context: DriverContext): Promise<Buffer> {
    return this.collect(await this.driver.get(key, context), context.signal);
  }
}

/** Rejects as soon as `signal` aborts; a late result of `work` is then ignored (and its error swallowed). */
function abandonOnAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      work.catch(() => undefined);
      reject(signal.reason as Error);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- passed through unchanged, wrapped by the caller
        reject(error);
      },
    );
  });
}

/** Passes `source` through, calling `onIdle` when no chunk moved for `idleMs`. */
function watchIdle(source: Readable, idleMs: number, onIdle: () => void): Readable {
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    clearTimeout(timer);
    timer = setTimeout(onIdle, idleMs);
  };
  const watch = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      arm();
      callback(null, chunk);
    },
    flush(callback) {
      clearTimeout(timer);
      callback();
    },
  });
  watch.once('close', () => clearTimeout(timer));
  arm();
  pipeline(source, watch, () => clearTimeout(timer));
  return watch;
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  if (typeof error === 'string') return error;
  try {
    return JSON.stringify(error);
  } catch {
    return String(error);
  }
}

export type { RemoteErrorCode };

/** Operations that may be in flight at once on one signal (chunks, existence checks). */
const SHARED_SIGNAL_LISTENERS = 1000;

/**
 * One task's signal is shared by its concurrent operations (16 existence checks at once, up to 32
 * chunks in flight), each listening for the abort until it ends: more than Node's warning limit of
 * 10, without any leak (each listener is removed when its operation ends).
 */
function allowConcurrentOperations(signal: AbortSignal): void {
  if (getMaxListeners(signal) < SHARED_SIGNAL_LISTENERS) setMaxListeners(SHARED_SIGNAL_LISTENERS, signal);
}
