import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { RemoteStore } from '@haven/remote-sdk';
import { sessionKey } from './format/repository.layout';
import { RepositoryError } from './repository.errors';

export const DEFAULT_SESSION_TTL_MS = 10 * 60 * 1000;

/** What a writer publishes in sessions/<id>.json while it runs (read by GC, see docs). */
export interface WriterSessionMarker {
  session: string;
  restorePoint: string;
  host: string;
  pid: number;
  startedAt: string;
  heartbeatAt: string;
  /** The marker is live while its object's modification time is younger than this. */
  ttlMs: number;
}

/**
 * A writer's presence on the repository. GC never purges chunks a live session may rely on; the
 * writer refuses to commit once its own heartbeat is older than half its TTL, so a GC that
 * declared it dead can never be contradicted by a late commit.
 */
export class WriterSession {
  private timer: NodeJS.Timeout | undefined;
  private lastHeartbeatOk: number;
  private heartbeatError: unknown;
  /** Set for good once two successful renewals were further apart than TTL / 2. */
  private expired = false;
  private beating: Promise<void> = Promise.resolve();

  private constructor(
    private readonly store: RemoteStore,
    private readonly marker: WriterSessionMarker,
  ) {
    this.lastHeartbeatOk = Date.now();
  }

  static async register(
    store: RemoteStore,
    restorePoint: string,
    ttlMs = DEFAULT_SESSION_TTL_MS,
  ): Promise<WriterSession> {
    const now = new Date().toISOString();
    const session = new WriterSession(store, {
      session: `${restorePoint}-${randomBytes(4).toString('hex')}`,
      restorePoint,
      host: hostname(),
      pid: process.pid,
      startedAt: now,
      heartbeatAt: now,
      ttlMs,
    });
    const started = Date.now();
    await store.put(sessionKey(session.id), session.body());
    session.lastHeartbeatOk = started;
    session.timer = setInterval(
      () => {
        session.beating = session.beating.then(() => session.beat());
      },
      Math.max(50, Math.floor(ttlMs / 4)),
    );
    session.timer.unref();
    return session;
  }

  get id(): string {
    return this.marker.session;
  }

  get host(): string {
    return this.marker.host;
  }

  /** Throws SESSION_EXPIRED when GC may already consider this writer dead. */
  assertAlive(): void {
    const age = Date.now() - this.lastHeartbeatOk;
    if (this.expired || age > this.marker.ttlMs / 2) {
      throw new RepositoryError(
        'SESSION_EXPIRED',
        `writer session ${this.id} on remote ${this.store.name} last renewed its marker ${age} ms ago ` +
          `(TTL ${this.marker.ttlMs} ms${this.heartbeatError instanceof Error ? `, last error: ${this.heartbeatError.message}` : ''}); ` +
          'garbage collection may have reclaimed its chunks, so the restore point is not committed: run the backup again',
        { remote: this.store.name, restorePoint: this.marker.restorePoint },
      );
    }
  }

  /** Renews now (before a commit), so a slow run still commits with a fresh marker. */
  async renew(): Promise<void> {
    this.beating = this.beating.then(() => this.beat());
    await this.beating;
  }

  async end(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.beating;
    await this.store.delete(sessionKey(this.id));
  }

  private async beat(): Promise<void> {
    if (this.timer === undefined) return;
    const started = Date.now();
    // A gap longer than TTL / 2 (process paused, remote unreachable) may have let GC declare this
    // writer dead: renewing now must not make a commit possible again.
    if (started - this.lastHeartbeatOk > this.marker.ttlMs / 2) this.expired = true;
    try {
      this.marker.heartbeatAt = new Date(started).toISOString();
      await this.store.put(sessionKey(this.id), this.body());
      this.lastHeartbeatOk = started;
    } catch (error) {
      this.heartbeatError = error;
    }
  }

  private body(): Buffer {
    return Buffer.from(JSON.stringify(this.marker));
  }
}
