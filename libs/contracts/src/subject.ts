/**
 * Typed, versioned control-plane subjects. A subject carries its DTO types only at compile time;
 * at run time it is its name plus the delivery settings the bus needs. A breaking change to a DTO
 * gets a new subject (`haven.v2.…`, or a new work-queue name), never an edited one: old and new
 * processes can then run side by side during an upgrade.
 */

/** A request/reply subject: one responder answers each request. */
export interface RequestSubject<Req, Res> {
  readonly kind: 'request';
  /** Dotted NATS subject with a version token, e.g. `haven.v1.catalog.ping`. */
  readonly name: string;
  /** Phantom fields: never present at run time, they only carry the DTO types. */
  readonly __request?: Req;
  readonly __response?: Res;
}

/** A fire-and-forget event subject: every subscriber (one per queue group) gets each event. */
export interface EventSubject<E> {
  readonly kind: 'event';
  readonly name: string;
  readonly __event?: E;
}

/** A durable work queue (a JetStream work-queue stream in distributed mode). */
export interface WorkQueue<T> {
  readonly kind: 'work';
  /** Stream-safe name, e.g. `backup-tasks`: letters, digits, `-` and `_`. */
  readonly name: string;
  /** Subject the items are published on, `haven.work.<name>`. */
  readonly subject: string;
  /** Subject (and stream) that keeps the items that failed their last attempt, `haven.dlq.<name>`. */
  readonly deadLetterSubject: string;
  /** Attempts before an item is dead-lettered (1 = no retry). */
  readonly maxDeliver: number;
  /** Without an ack, nak or `working()` for this long, the item is redelivered to another consumer. */
  readonly ackWaitMs: number;
  /** Delay before attempt n+1 after attempt n failed: entry n-1, the last entry repeating. */
  readonly retryDelaysMs: readonly number[];
  /** Items enqueued with the same id within this window are stored once. */
  readonly dedupeWindowMs: number;
  readonly __item?: T;
}

export interface WorkQueueOptions {
  maxDeliver?: number;
  ackWaitMs?: number;
  retryDelaysMs?: readonly number[];
  dedupeWindowMs?: number;
}

export const DEFAULT_MAX_DELIVER = 5;
export const DEFAULT_ACK_WAIT_MS = 30_000;
export const DEFAULT_RETRY_DELAYS_MS: readonly number[] = [1_000, 5_000, 30_000, 60_000];
export const DEFAULT_DEDUPE_WINDOW_MS = 120_000;

/** Thrown at definition time (module load), so a bad subject never reaches a running bus. */
export class SubjectDefinitionError extends Error {
  readonly code = 'SUBJECT_DEFINITION_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'SubjectDefinitionError';
  }
}

const SUBJECT_TOKEN = /^[A-Za-z0-9_-]+$/;
const VERSION_TOKEN = /^v[0-9]+$/;
const QUEUE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

function assertVersionedSubject(kind: string, name: string): void {
  const tokens = name.split('.');
  const bad = tokens.find((token) => !SUBJECT_TOKEN.test(token));
  if (name.length === 0 || bad !== undefined) {
    throw new SubjectDefinitionError(
      `${kind} subject "${name}" is not a valid subject: use dot-separated tokens of letters, digits, "-" and "_" without wildcards (bad token: "${bad ?? ''}")`,
    );
  }
  if (!tokens.some((token) => VERSION_TOKEN.test(token))) {
    throw new SubjectDefinitionError(
      `${kind} subject "${name}" has no version token: name it like "haven.v1.catalog.ping" (a breaking DTO change gets a new vN subject)`,
    );
  }
}

function assertPositiveInteger(queue: string, field: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new SubjectDefinitionError(
      `work queue "${queue}": ${field} must be an integer >= ${min}, got ${value}`,
    );
  }
}

export function defineRequest<Req, Res>(name: string): RequestSubject<Req, Res> {
  assertVersionedSubject('request', name);
  return Object.freeze({ kind: 'request', name });
}

export function defineEvent<E>(name: string): EventSubject<E> {
  assertVersionedSubject('event', name);
  return Object.freeze({ kind: 'event', name });
}

export function defineWorkQueue<T>(name: string, options: WorkQueueOptions = {}): WorkQueue<T> {
  if (!QUEUE_NAME.test(name)) {
    throw new SubjectDefinitionError(
      `work queue name "${name}" is not stream-safe: use 1 to 64 letters, digits, "-" or "_" (e.g. "backup-tasks")`,
    );
  }
  const maxDeliver = options.maxDeliver ?? DEFAULT_MAX_DELIVER;
  const ackWaitMs = options.ackWaitMs ?? DEFAULT_ACK_WAIT_MS;
  const dedupeWindowMs = options.dedupeWindowMs ?? DEFAULT_DEDUPE_WINDOW_MS;
  const retryDelaysMs = options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
  assertPositiveInteger(name, 'maxDeliver', maxDeliver, 1);
  assertPositiveInteger(name, 'ackWaitMs', ackWaitMs, 100);
  assertPositiveInteger(name, 'dedupeWindowMs', dedupeWindowMs, 1_000);
  if (retryDelaysMs.length === 0) {
    throw new SubjectDefinitionError(`work queue "${name}": retryDelaysMs needs at least one delay`);
  }
  retryDelaysMs.forEach((delay, index) => assertPositiveInteger(name, `retryDelaysMs[${index}]`, delay, 0));
  return Object.freeze({
    kind: 'work',
    name,
    subject: `haven.work.${name}`,
    deadLetterSubject: `haven.dlq.${name}`,
    maxDeliver,
    ackWaitMs,
    retryDelaysMs: Object.freeze([...retryDelaysMs]),
    dedupeWindowMs,
  });
}

/** Delay before the next attempt after `attempt` (1-based) failed. */
export function retryDelayAfter(queue: WorkQueue<unknown>, attempt: number): number {
  const delays = queue.retryDelaysMs;
  return delays[Math.min(Math.max(attempt, 1), delays.length) - 1] ?? 0;
}
