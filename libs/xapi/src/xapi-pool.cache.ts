import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import { toXapiError } from './xapi.error';
import { XapiPool, type XapiPoolOptions } from './xapi-pool';

/** What a task knows of a pool: the catalog's id for it and how to log in. */
export interface CachedPoolAccess extends XapiPoolOptions {
  /** The pool's catalog id: one cached connection per id. */
  id: string;
}

export interface XapiPoolCacheOptions {
  /** How long a connection nobody uses stays open for the next task (default 60 s). */
  idleMs?: number;
  /** Opens a connection (default `XapiPool.connect`); tests count logins through it. */
  connect?: (options: XapiPoolOptions, signal?: AbortSignal) => Promise<XapiPool>;
}

interface CachedConnection {
  credentials: string;
  connecting: Promise<XapiPool>;
  /** The signal of the task that opened it: when that task gives up, others waiting on it retry. */
  openedFor: AbortSignal | undefined;
  users: number;
  /** The login failed: never handed out again. */
  failed: boolean;
  /** No longer handed out (credentials changed, a failure showed it broken, cache closed). */
  retired: boolean;
  idleTimer?: NodeJS.Timeout;
}

/** The cache of the worker or scheduler running the current task or plan, if any. */
const ambient = new AsyncLocalStorage<XapiPoolCache>();

/**
 * Runs `work` on a connection to the pool: the one the current scope's cache shares (see
 * `XapiPoolCache.scope`), else a connection of its own, closed when `work` ends. `work` must not
 * close the pool.
 */
export async function withPoolConnection<T>(
  access: CachedPoolAccess,
  signal: AbortSignal | undefined,
  work: (pool: XapiPool) => Promise<T>,
): Promise<T> {
  const cache = ambient.getStore();
  if (cache !== undefined) return cache.withPool(access, signal, work);
  const pool = await XapiPool.connect(access, signal);
  try {
    return await work(pool);
  } finally {
    await pool.close();
  }
}

/**
 * Logged-in pool connections shared by the tasks of one process: a task borrows the connection of
 * its pool (by catalog id) instead of logging in again, which costs a login, the client's initial
 * fetch of every object and an event stream per task. A connection is handed out only for the
 * same credentials (a changed URL, user or password opens a new one and retires the old), is
 * dropped after a task that used it failed, and closes after `idleMs` unused (so a pool removed
 * from the catalog, whose access can no longer be read, does not keep one open).
 */
export class XapiPoolCache {
  private readonly connections = new Map<string, CachedConnection>();
  private readonly idleMs: number;
  private readonly connect: (options: XapiPoolOptions, signal?: AbortSignal) => Promise<XapiPool>;

  constructor(options: XapiPoolCacheOptions = {}) {
    this.idleMs = options.idleMs ?? 60_000;
    this.connect = options.connect ?? ((access, signal) => XapiPool.connect(access, signal));
  }

  /**
   * Runs `work` on a connection to the pool, opened or reused. A connection whose `work` failed is
   * not reused (the failure may be the connection's: a lost session, an unreachable host, an event
   * stream in its retry pause): the next task logs in afresh, as every task did before the cache.
   * `work` must not close the pool.
   */
  async withPool<T>(
    access: CachedPoolAccess,
    signal: AbortSignal | undefined,
    work: (pool: XapiPool) => Promise<T>,
  ): Promise<T> {
    const { connection, pool } = await this.acquire(access, signal);
    try {
      return await work(pool);
    } catch (error) {
      this.retire(access.id, connection);
      throw error;
    } finally {
      this.release(connection);
    }
  }

  /** Runs `body` with this cache serving every `withPoolConnection` inside it. */
  scope<T>(body: () => T): T {
    return ambient.run(this, body);
  }

  /** Connections held open now (idle or in use), for tests and metrics. */
  get size(): number {
    return this.connections.size;
  }

  /** Closes idle connections now and those in use as their tasks end. The cache stays usable. */
  async close(): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const [id, connection] of this.connections) {
      this.connections.delete(id);
      connection.retired = true;
      if (connection.users === 0) closing.push(this.shut(connection));
    }
    await Promise.all(closing);
  }

  private async acquire(
    access: CachedPoolAccess,
    signal: AbortSignal | undefined,
  ): Promise<{ connection: CachedConnection; pool: XapiPool }> {
    signal?.throwIfAborted();
    const credentials = fingerprint(access);
    let connection = this.connections.get(access.id);
    if (connection !== undefined && connection.credentials !== credentials) {
      this.retire(access.id, connection);
      connection = undefined;
    }
    const opener = connection === undefined;
    if (connection === undefined) {
      const options: XapiPoolOptions = {
        url: access.url,
        username: access.username,
        password: access.password,
        ...(access.allowUnauthorized !== undefined ? { allowUnauthorized: access.allowUnauthorized } : {}),
        ...(access.callTimeoutMs !== undefined ? { callTimeoutMs: access.callTimeoutMs } : {}),
        ...(access.transport !== undefined ? { transport: access.transport } : {}),
        ...(access.taskTimeoutMs !== undefined ? { taskTimeoutMs: access.taskTimeoutMs } : {}),
        ...(access.eventDebounceMs !== undefined ? { eventDebounceMs: access.eventDebounceMs } : {}),
      };
      const opened: CachedConnection = {
        credentials,
        connecting: this.connect(options, signal),
        openedFor: signal,
        users: 0,
        failed: false,
        retired: false,
      };
      // Registered first, so it has run by the time any waiter sees the rejection.
      opened.connecting.catch(() => {
        opened.failed = true;
      });
      this.connections.set(access.id, opened);
      connection = opened;
    }
    const current = connection;
    current.users++;
    clearTimeout(current.idleTimer);
    try {
      // The opener's own connect honours its signal; a task joining it stops waiting on its own.
      const pool = opener
        ? await current.connecting
        : await waitUnlessAborted(current.connecting, signal, access);
      return { connection: current, pool };
    } catch (error) {
      // A failed login is never reused; a task that joined it tries again if only the opener gave up.
      // (A task that gave up itself leaves a login still under way to the others.)
      if (current.failed) this.retire(access.id, current);
      this.release(current);
      if (current.failed && !opener && current.openedFor?.aborted === true && signal?.aborted !== true)
        return this.acquire(access, signal);
      throw error;
    }
  }

  private release(connection: CachedConnection): void {
    connection.users--;
    if (connection.users > 0) return;
    if (connection.retired) {
      void this.shut(connection);
      return;
    }
    connection.idleTimer = setTimeout(() => {
      for (const [id, candidate] of this.connections)
        if (candidate === connection) this.retire(id, connection);
    }, this.idleMs);
    connection.idleTimer.unref();
  }

  private retire(id: string, connection: CachedConnection): void {
    if (this.connections.get(id) === connection) this.connections.delete(id);
    if (connection.retired) return;
    connection.retired = true;
    if (connection.users === 0) void this.shut(connection);
  }

  private async shut(connection: CachedConnection): Promise<void> {
    clearTimeout(connection.idleTimer);
    const pool = await connection.connecting.catch(() => undefined);
    await pool?.close();
  }
}

/** Credentials compared, never kept: a digest of everything that decides which session we get. */
function fingerprint(access: CachedPoolAccess): string {
  return createHash('sha256')
    .update(
      JSON.stringify([
        access.url,
        access.username,
        access.password,
        access.allowUnauthorized ?? false,
        access.transport ?? 'auto',
        access.callTimeoutMs ?? null,
        access.taskTimeoutMs ?? null,
        access.eventDebounceMs ?? null,
      ]),
    )
    .digest('hex');
}

/** Waits for another task's login unless `signal` aborts first (then fails as a cancelled login). */
async function waitUnlessAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
  access: CachedPoolAccess,
): Promise<T> {
  if (signal === undefined) return promise;
  let onAbort = (): void => undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () =>
      reject(
        toXapiError(signal.reason, {
          // The origin carries no credentials.
          poolUrl: URL.canParse(access.url) ? new URL(access.url).origin : '(invalid pool URL)',
          operation: 'login',
          object: `user "${access.username}"`,
        }),
      );
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([promise, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
