import type { Readable } from 'node:stream';
import type { ErrorClassification } from './remote.errors';
import type { ListPage, ObjectStat, RemoteCapacity, RemoteFeatures } from './remote.contract';

/**
 * Existence checks an object store's driver keeps in flight (its statsInFlight): each HEAD is a
 * round trip, so 16 at a time left an 8 GiB base's 3,072 checks at 10-13 s with 40 ms between
 * Haven and s3rver (docs/benchmarks/remotes.md, "Existence checks a round trip away").
 */
export const OBJECT_STORE_STATS_IN_FLIGHT = 64;

/** Every primitive gets a signal that fires on the caller's abort or on the base class's timeout. */
export interface DriverContext {
  signal: AbortSignal;
}

/**
 * The primitives one backend implements. Keys arrive validated (relative, no '..', no empty
 * segments); the `Remote` base class does retries, timeouts, abort handling and error naming.
 * Drivers throw native errors (classified by `classifyError`) or a `DriverError`.
 */
export interface RemoteDriver {
  readonly type: string;
  readonly features: RemoteFeatures;
  /** See RemoteStore.writesInFlight (absent: 1). */
  readonly writesInFlight?: number;
  /**
   * Existence checks (stat) RemoteStore.missing() keeps in flight: more than the default 16 for a
   * backend whose every check is a round trip (an object store's HEAD).
   */
  readonly statsInFlight?: number;

  /**
   * Atomic write: the object appears whole or not at all. When `body` is a stream that errors,
   * nothing may remain visible (no object, no listed temporary).
   */
  put(key: string, body: Buffer | Readable, context: DriverContext & { size?: number }): Promise<void>;
  /** Atomic create: false when the key exists. */
  putIfAbsent(key: string, body: Buffer, context: DriverContext): Promise<boolean>;
  /**
   * Optional staged create for content-addressed keys (see RemoteStore.stageIfAbsent): without it
   * the base class calls putIfAbsent. A driver that stages must implement flush too.
   */
  stageIfAbsent?(key: string, body: Buffer, context: DriverContext): Promise<boolean>;
  /** Makes every staged object durable and visible; what a failed flush left is flushed by the next. */
  flush?(context: DriverContext): Promise<void>;
  /** `range.end` > `range.start` here (the base class answers empty ranges); end may exceed the size. */
  get(key: string, context: DriverContext & { range?: { start: number; end: number } }): Promise<Readable>;
  /**
   * Optional: the object (or range) read into one buffer of its size, refusing with
   * INVALID_ARGUMENT an object over `maxBytes`. Without it the base class concatenates get()'s
   * stream, three allocations more per 2 MiB chunk (docs/benchmarks/jobs.md, restore memory).
   */
  getBuffer?(
    key: string,
    context: DriverContext & { range?: { start: number; end: number }; maxBytes: number },
  ): Promise<Buffer>;
  stat(key: string, context: DriverContext): Promise<ObjectStat>;
  /** Ascending key order; `cursor` is what the previous page returned. 1 <= limit <= 1000. */
  list(prefix: string, context: DriverContext & { cursor?: string; limit: number }): Promise<ListPage>;
  /** May throw NOT_FOUND for a missing key: the base class makes delete idempotent. */
  delete(key: string, context: DriverContext): Promise<void>;
  copy(fromKey: string, toKey: string, context: DriverContext): Promise<void>;
  /** Optional: without it the base class copies then deletes. */
  rename?(fromKey: string, toKey: string, context: DriverContext): Promise<void>;
  capacity(context: DriverContext): Promise<RemoteCapacity>;
  /** Maps a backend-specific error; undefined leaves it to the generic errno mapping. */
  classifyError(error: unknown): ErrorClassification | undefined;
  close(): Promise<void>;
}
