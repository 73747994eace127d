import type { EventSubject, RequestSubject, WorkQueue } from '@haven/contracts';
import type { MemoryBroker } from './drivers/memory.broker';

/** The control-plane bus: request/reply, events and durable work queues. Never disk data. */
export interface Bus {
  /** This client's name (the NATS connection name), for logs and health. */
  readonly name: string;
  /** Sends a request and waits for one reply; rejects with BusTimeoutError, BusNoRespondersError or BusRemoteError. */
  request<Req, Res>(subject: RequestSubject<Req, Res>, payload: Req, options?: RequestOptions): Promise<Res>;
  /**
   * Answers requests. Responders share the queue group `options.queue` (default: the subject name),
   * so each request is handled once however many replicas run. A thrown error goes back to the
   * requester as a BusRemoteError carrying its `code` and message.
   */
  respond<Req, Res>(
    subject: RequestSubject<Req, Res>,
    handler: (payload: Req) => Promise<Res>,
    options?: SubscribeOptions,
  ): BusSubscription;
  publish<E>(subject: EventSubject<E>, payload: E): Promise<void>;
  /** Every subscriber gets each event, except that members of one queue group share it. */
  subscribe<E>(
    subject: EventSubject<E>,
    handler: (payload: E) => void | Promise<void>,
    options?: SubscribeOptions,
  ): BusSubscription;
  /** Stores a work item durably; with `id`, the same id within the queue's dedupe window is stored once. */
  enqueue<T>(queue: WorkQueue<T>, payload: T, options?: EnqueueOptions): Promise<EnqueueResult>;
  /**
   * Pulls items one per free slot. Handler resolves: ack. Handler throws: retried after the
   * queue's retry delay; after `maxDeliver` attempts the item goes to the dead letters.
   */
  consume<T>(
    queue: WorkQueue<T>,
    handler: (item: WorkItem<T>) => Promise<void>,
    options?: ConsumeOptions,
  ): Promise<BusSubscription>;
  deadLetters<T>(queue: WorkQueue<T>): DeadLetterBox<T>;
  health(): Promise<BusHealth>;
  /**
   * Stops intake, aborts in-flight work items' signals and waits (up to the drain timeout) for
   * their handlers: a resolved handler acks, an aborted one hands its item back to the queue.
   */
  close(): Promise<void>;
}

export interface RequestOptions {
  /** Default: the bus's requestTimeoutMs (5 s). */
  timeoutMs?: number;
}

export interface SubscribeOptions {
  queue?: string;
}

export interface EnqueueOptions {
  /** Dedupe id: enqueuing the same id again within the queue's dedupe window is a no-op. */
  id?: string;
}

export interface EnqueueResult {
  /** The item's id (the dedupe id, or a generated one). */
  id: string;
  /** True when the id was already stored within the dedupe window and nothing was added. */
  duplicate: boolean;
}

export interface ConsumeOptions {
  /** Items handled at the same time by this consumer (default 1). */
  concurrency?: number;
  /**
   * Durable consumer the workers share (default `workers`). A work queue holds each item once, so
   * every worker of a queue must use the same name.
   */
  consumerName?: string;
}

export interface BusSubscription {
  /**
   * Resolves once the server has registered the subscription: a request or event sent from
   * another connection after this reaches it. (NATS subscribes asynchronously.)
   */
  ready(): Promise<void>;
  /** Stops intake and waits for the handlers already running. */
  unsubscribe(): Promise<void>;
}

export interface WorkItem<T> {
  payload: T;
  /** 1-based delivery attempt. */
  attempt: number;
  maxDeliver: number;
  /** The dedupe id given to enqueue, or the generated one. */
  id: string;
  /** In-progress ack: restarts the ack deadline; call it regularly during long work. */
  working(): void;
  /** Aborted when this consumer shuts down: stop, and let the item go back to the queue. */
  signal: AbortSignal;
}

export interface DeadLetter<T> {
  /** Position in the dead-letter store, for remove/requeue. */
  sequence: number;
  queue: string;
  id: string;
  /** The item as enqueued; null when it could not be decoded (see `error`). */
  payload: T | null;
  attempts: number;
  error: { code: string; message: string };
  /** ISO-8601 time it was dead-lettered. */
  deadAt: string;
}

export interface DeadLetterBox<T> {
  /** Oldest first. */
  list(options?: { limit?: number; fromSequence?: number }): Promise<DeadLetter<T>[]>;
  count(): Promise<number>;
  /** Live feed of new dead letters (not the stored ones). */
  watch(handler: (letter: DeadLetter<T>) => void | Promise<void>): Promise<BusSubscription>;
  /** Deletes one letter; false when it did not exist. */
  remove(sequence: number): Promise<boolean>;
  /** Enqueues the letter's payload again as a fresh item (attempt 1) and deletes the letter. */
  requeue(sequence: number): Promise<EnqueueResult>;
}

export interface BusHealth {
  ok: boolean;
  detail: string;
}

export interface BusLogger {
  warn(message: string, context?: Record<string, unknown>): void;
  error(message: string, context?: Record<string, unknown>): void;
}

/** How a work item's delivery ended, for metrics. */
export type WorkOutcome = 'acked' | 'retried' | 'dead-lettered' | 'handed-back';

/** How a request ended, for metrics. */
export type RequestOutcome = 'ok' | 'remote-error' | 'timeout' | 'no-responders' | 'failed';

/** Optional hooks for metrics (Prometheus counters, gauges and histograms). Must not throw. */
export interface BusObserver {
  workStarted?(queue: string): void;
  workSettled?(queue: string, outcome: WorkOutcome, durationMs: number): void;
  requestFinished?(subject: string, outcome: RequestOutcome, durationMs: number): void;
}

interface CommonBusConfig {
  /** Client name (NATS connection name). */
  name: string;
  /** Namespaces every subject and stream name (tests, several installs on one NATS). */
  prefix?: string;
  /** Largest encoded payload accepted (default 1 MiB, capped by the server's max_payload). */
  maxPayloadBytes?: number;
  /** Default request timeout (default 5000 ms). */
  requestTimeoutMs?: number;
  /** How long close() waits for in-flight handlers (default 30000 ms). */
  drainTimeoutMs?: number;
  logger?: BusLogger;
  observer?: BusObserver;
}

export interface NatsBusConfig extends CommonBusConfig {
  driver: 'nats';
  /** One URL or several, comma-separated (`nats://127.0.0.1:4222`). */
  url: string;
  user?: string;
  pass?: string;
  token?: string;
  /** First connection timeout (default 5000 ms); later disconnects reconnect forever. */
  connectTimeoutMs?: number;
  /** How long an idle pull request waits on the server before being renewed (default 10 s, min 1 s). */
  pullExpiresMs?: number;
  /** Dead letters are kept this long (default 30 days). */
  deadLetterMaxAgeMs?: number;
}

export interface MemoryBusConfig extends CommonBusConfig {
  driver: 'memory';
  /**
   * Buses on one broker talk to each other. Default: a new broker of its own, so the one bus of an
   * all-in-one process is its whole world and two app instances in one test process never share
   * work. Pass `MemoryBroker.shared()` (or any broker) to connect several buses.
   */
  broker?: MemoryBroker;
}

export type BusConfig = NatsBusConfig | MemoryBusConfig;
