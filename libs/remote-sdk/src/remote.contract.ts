import type { Readable } from 'node:stream';

/**
 * What every part of Haven sees of a remote (a place where backups live). Keys are relative,
 * '/'-separated object names ("chunks/ab/cd/abcd…", "restore-points/…/manifest.json"); a remote
 * stores objects, not folders. Implemented once by the `Remote` base class over a small
 * `RemoteDriver` per backend, which is where checks, retries, timeouts and error naming live.
 */
export interface RemoteStore {
  /** Operator-facing name, used in every error message. Never a secret. */
  readonly name: string;
  /** Plugin type: local, nfs, smb, s3, azure, … */
  readonly type: string;
  /**
   * What this remote really guarantees, where it differs by backend or server (an S3 server that
   * ignores `If-None-Match`, …). Absent means every guarantee documented here holds.
   */
  readonly features?: RemoteFeatures;
  /**
   * Writes one stream of objects (an archive's segments) should keep in flight to hide the
   * backend's round trip: several for an object store across a network, 1 for a file system.
   * Absent means 1. Each write in flight holds its object in memory.
   */
  readonly writesInFlight?: number;

  /** Atomic: readers see the whole new object or nothing (also when the writer dies mid-way). Overwrites. */
  put(key: string, body: Buffer | Readable | ReplayableBody, options?: PutOptions): Promise<void>;
  /** Atomic create-if-absent: false when the key already exists (nothing written then). */
  putIfAbsent(key: string, body: Buffer, options?: PutOptions): Promise<boolean>;
  /**
   * For content-addressed objects only (one key, one possible content: chunks named by their
   * hash). Stores `body` unless the key exists, like putIfAbsent, answering true when this call
   * stored it; but the object may be staged: neither durable nor visible until the next `flush()`
   * of this remote resolves (the backend may flush earlier). Never visible half-written, nor torn
   * after a crash or a power cut. Two concurrent callers may both be answered true. Backends that
   * cannot stage store it as putIfAbsent does.
   */
  stageIfAbsent(key: string, body: Buffer, options?: OperationOptions): Promise<boolean>;
  /** Makes every object staged through this remote so far durable and visible. */
  flush(options?: OperationOptions): Promise<void>;
  /** Object content as a stream, whole or a byte range. */
  get(key: string, options?: GetOptions): Promise<Readable>;
  /** Small objects only (manifests, indexes, chunks): the whole object in memory. */
  getBuffer(key: string, options?: GetOptions): Promise<Buffer>;
  stat(key: string, options?: OperationOptions): Promise<ObjectStat>;
  /** stat() that answers false instead of throwing NOT_FOUND. */
  exists(key: string, options?: OperationOptions): Promise<boolean>;
  /**
   * exists() for many keys at once: those of `keys` that hold no object (a folder of a file-system
   * remote is none). Cheaper than one exists() per key: the keys share timeouts and retries.
   */
  missing(keys: Iterable<string>, options?: OperationOptions): Promise<Set<string>>;
  /**
   * Objects whose key starts with `prefix` (recursively), in ascending key order, one page at a
   * time; pass the returned cursor to get the next page.
   */
  list(prefix: string, options?: ListOptions): Promise<ListPage>;
  /** Every page of list(), as one iterator. */
  listAll(prefix: string, options?: OperationOptions): AsyncIterable<ObjectStat>;
  /** Idempotent: deleting a missing object succeeds. */
  delete(key: string, options?: OperationOptions): Promise<void>;
  /** Server-side copy where the backend has one. Overwrites the target. */
  copy(fromKey: string, toKey: string, options?: OperationOptions): Promise<void>;
  /** Rename (or copy then delete where the backend has no rename). Overwrites the target. */
  rename(fromKey: string, toKey: string, options?: OperationOptions): Promise<void>;
  /** Free / used / total bytes where the backend knows them. */
  capacity(options?: OperationOptions): Promise<RemoteCapacity>;
  /**
   * An exclusive, expiring lease named `name` (garbage collection, format upgrades). Throws a
   * RemoteError with code LOCKED, naming the holder, when someone else holds a live lease.
   */
  acquireLease(name: string, options: LeaseOptions): Promise<RemoteLease>;
  /** Releases connections. */
  close(): Promise<void>;
}

export interface RemoteFeatures {
  /** putIfAbsent is atomic on the server: of concurrent creators exactly one wins. */
  atomicPutIfAbsent: boolean;
  /** rename is a single atomic server operation (else copy then delete). */
  atomicRename: boolean;
  /** capacity() reports real figures. */
  capacity: boolean;
  /**
   * list() walks a flat key space, as object stores do: one request returns a page of a prefix's
   * keys however deep they are nested, so a listing costs a round trip per 1,000 keys. Absent or
   * false where a listing walks folders one by one (file systems), each folder a request of its own.
   */
  flatListing?: boolean;
  /**
   * list() stats every object it lists (a local file system, walked folder by folder, has no
   * listing with sizes and dates): a stat of each key asked about never costs more than a listing
   * of the folders holding them, and leaves no listing's objects behind.
   */
  listingStatsEachObject?: boolean;
}

export interface OperationOptions {
  signal?: AbortSignal;
}

/**
 * A body produced as it is sent, and produced again from its start for a retry: a large object
 * written without a buffer of its size (a disk index), retried like a Buffer, unlike a Readable.
 */
export interface ReplayableBody {
  /** Bytes every stream from `open` yields. */
  readonly size: number;
  /** A new stream of the whole body, for each attempt. */
  open(): Readable;
}

export function isReplayableBody(body: unknown): body is ReplayableBody {
  return (
    typeof body === 'object' &&
    body !== null &&
    !Buffer.isBuffer(body) &&
    typeof (body as ReplayableBody).open === 'function' &&
    typeof (body as ReplayableBody).size === 'number'
  );
}

export interface PutOptions extends OperationOptions {
  /** Size of a stream body when known (lets backends pick single vs multipart upload). */
  size?: number;
}

export interface GetOptions extends OperationOptions {
  /** Byte range, start inclusive, end exclusive. */
  range?: { start: number; end: number };
}

export interface ListOptions extends OperationOptions {
  cursor?: string;
  /** Page size, at most 1000. */
  limit?: number;
}

export interface ObjectStat {
  key: string;
  size: number;
  modifiedAt: Date;
}

export interface ListPage {
  objects: ObjectStat[];
  /** Absent on the last page. */
  cursor?: string;
}

export interface RemoteCapacity {
  totalBytes?: number;
  usedBytes?: number;
  freeBytes?: number;
}

export interface LeaseOptions extends OperationOptions {
  /** Who holds it: shown to whoever is refused. */
  owner: string;
  ttlMs: number;
  /**
   * How far the clocks of the machines sharing the remote may disagree: an expired lease is taken
   * over only after expiresAt + clockSkewMs. Default 2000.
   */
  clockSkewMs?: number;
}

export interface RemoteLease {
  readonly name: string;
  readonly owner: string;
  readonly expiresAt: Date;
  /** Extends the lease; throws LOCKED if it was lost meanwhile. */
  renew(): Promise<void>;
  release(): Promise<void>;
}
