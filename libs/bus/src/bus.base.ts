import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EventSubject, RequestSubject, WorkQueue } from '@haven/contracts';
import type {
  Bus,
  BusHealth,
  BusLogger,
  BusObserver,
  BusSubscription,
  RequestOutcome,
  ConsumeOptions,
  DeadLetter,
  DeadLetterBox,
  EnqueueOptions,
  EnqueueResult,
  RequestOptions,
  SubscribeOptions,
  WorkItem,
} from './bus.interface';
import {
  BusClosedError,
  BusConfigurationError,
  BusDecodeError,
  BusNoRespondersError,
  BusRemoteError,
  BusTimeoutError,
  carriedError,
  type CarriedError,
} from './bus.errors';
import { JsonCodec } from './json.codec';
import { BusNamespace } from './subject.namespace';
import { WorkRunner, type DeadLetterRecord, type WorkDelivery } from './work.runner';

/** NATS's default max_payload is 1 MiB; 16 KiB stay free for headers and dead-letter envelopes. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024 - 16 * 1024;
export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
export const DEFAULT_CONSUMER_NAME = 'workers';

const CONSUMER_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** A message arriving on a subscription; `reply` is set for requests. */
export interface IncomingMessage {
  data: Uint8Array;
  reply: ((data: Uint8Array) => void) | undefined;
}

export interface TransportListener {
  /** Stops intake; messages already received are still handed over. */
  stop(): Promise<void>;
}

/** Pulls one delivery at a time for one consumer slot. */
export interface WorkPuller {
  /** The next delivery, or null when none came within the pull window or the puller stopped. */
  next(): Promise<WorkDelivery | null>;
  /** Makes pending and future next() calls resolve null. */
  stop(): void;
}

export interface StoredDeadLetter {
  sequence: number;
  data: Uint8Array;
}

export interface DeadLetterStorage {
  append(data: Uint8Array): Promise<void>;
  list(fromSequence: number, limit: number): Promise<StoredDeadLetter[]>;
  get(sequence: number): Promise<Uint8Array | null>;
  count(): Promise<number>;
  remove(sequence: number): Promise<boolean>;
  watch(onLetter: (letter: StoredDeadLetter) => void): Promise<TransportListener>;
}

export interface BaseBusSettings {
  name: string;
  prefix: string | undefined;
  payloadLimitBytes: number;
  deadLetterLimitBytes: number;
  requestTimeoutMs: number;
  drainTimeoutMs: number;
  logger: BusLogger;
  observer: BusObserver;
}

type ReplyEnvelope = { ok: true; value?: unknown } | { ok: false; error: CarriedError };

/**
 * The public bus behaviour, written once: argument checks, encoding and the payload limit,
 * reply envelopes, handler tracking, work delivery rules, drain on close. A driver supplies the
 * transport primitives below.
 */
export abstract class BaseBus implements Bus {
  readonly name: string;
  protected readonly namespace: BusNamespace;
  protected readonly codec: JsonCodec;
  protected readonly deadLetterCodec: JsonCodec;
  protected readonly logger: BusLogger;
  private readonly observer: BusObserver;
  protected readonly requestTimeoutMs: number;
  private readonly drainTimeoutMs: number;
  private state: 'open' | 'closing' | 'closed' = 'open';
  private closing: Promise<void> | undefined;
  private readonly listeners = new Set<ActiveListener>();
  private readonly consumers = new Set<StoppableConsumer>();

  protected constructor(settings: BaseBusSettings) {
    this.name = settings.name;
    this.namespace = new BusNamespace(settings.prefix);
    this.codec = new JsonCodec(settings.payloadLimitBytes);
    this.deadLetterCodec = new JsonCodec(settings.deadLetterLimitBytes);
    this.logger = settings.logger;
    this.observer = settings.observer;
    this.requestTimeoutMs = settings.requestTimeoutMs;
    this.drainTimeoutMs = settings.drainTimeoutMs;
  }

  /** Largest encoded payload this bus accepts. */
  get payloadLimitBytes(): number {
    return this.codec.limitBytes;
  }

  get closed(): boolean {
    return this.state !== 'open';
  }

  // ---- transport primitives ------------------------------------------------------------------
  /** Rejects with BusTimeoutError or BusNoRespondersError. */
  protected abstract sendRequest(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  protected abstract listen(
    subject: string,
    queue: string | undefined,
    onMessage: (message: IncomingMessage) => void,
  ): TransportListener;
  protected abstract send(subject: string, data: Uint8Array): Promise<void>;
  protected abstract store(
    queue: WorkQueue<unknown>,
    data: Uint8Array,
    id: string,
  ): Promise<{ duplicate: boolean }>;
  protected abstract openPuller(queue: WorkQueue<unknown>, consumerName: string): Promise<WorkPuller>;
  protected abstract deadLetterStorage(queue: WorkQueue<unknown>): DeadLetterStorage;
  /** Resolves once the server has processed everything this client sent before. */
  protected abstract flush(): Promise<void>;
  /** Closes the transport after the drain. */
  protected abstract shutdown(): Promise<void>;
  /** Drops the transport at once, as a dying process would. */
  protected abstract abandon(): Promise<void>;
  abstract health(): Promise<BusHealth>;

  // ---- request / reply -----------------------------------------------------------------------
  async request<Req, Res>(
    subject: RequestSubject<Req, Res>,
    payload: Req,
    options?: RequestOptions,
  ): Promise<Res> {
    const wire = this.namespace.subject(subject.name);
    this.assertOpen(wire, 'send a request on');
    const data = this.codec.encode(wire, payload);
    const timeoutMs = options?.timeoutMs ?? this.requestTimeoutMs;
    if (!(timeoutMs > 0)) {
      throw new BusConfigurationError(wire, `timeoutMs must be a positive number, got ${timeoutMs}`);
    }
    const started = performance.now();
    let outcome: RequestOutcome = 'failed';
    try {
      const envelope = this.codec.decode(wire, await this.sendRequest(wire, data, timeoutMs));
      if (!isReplyEnvelope(envelope)) {
        throw new BusDecodeError(wire, 'the reply is not a Haven reply envelope');
      }
      if (envelope.ok) {
        outcome = 'ok';
        return envelope.value as Res;
      }
      outcome = 'remote-error';
      throw new BusRemoteError(wire, envelope.error.code, envelope.error.message, envelope.error.name);
    } catch (error) {
      if (error instanceof BusTimeoutError) outcome = 'timeout';
      else if (error instanceof BusNoRespondersError) outcome = 'no-responders';
      throw error;
    } finally {
      this.observer.requestFinished?.(wire, outcome, performance.now() - started);
    }
  }

  respond<Req, Res>(
    subject: RequestSubject<Req, Res>,
    handler: (payload: Req) => Promise<Res>,
    options?: SubscribeOptions,
  ): BusSubscription {
    const wire = this.namespace.subject(subject.name);
    this.assertOpen(wire, 'respond on');
    return this.addListener(wire, options?.queue ?? subject.name, (message) =>
      this.answer(wire, message, handler),
    );
  }

  private async answer(
    wire: string,
    message: IncomingMessage,
    handler: (payload: never) => Promise<unknown>,
  ): Promise<void> {
    let envelope: ReplyEnvelope;
    try {
      envelope = { ok: true, value: await handler(this.codec.decode(wire, message.data) as never) };
    } catch (error) {
      envelope = { ok: false, error: carriedError(error) };
    }
    if (message.reply === undefined) return;
    let data: Uint8Array;
    try {
      data = this.codec.encode(wire, envelope);
    } catch (error) {
      // A reply over the limit reaches the requester as a BusRemoteError with this code.
      data = this.codec.encode(wire, { ok: false, error: carriedError(error) });
    }
    message.reply(data);
  }

  // ---- events --------------------------------------------------------------------------------
  async publish<E>(subject: EventSubject<E>, payload: E): Promise<void> {
    const wire = this.namespace.subject(subject.name);
    this.assertOpen(wire, 'publish on');
    await this.send(wire, this.codec.encode(wire, payload));
  }

  subscribe<E>(
    subject: EventSubject<E>,
    handler: (payload: E) => void | Promise<void>,
    options?: SubscribeOptions,
  ): BusSubscription {
    const wire = this.namespace.subject(subject.name);
    this.assertOpen(wire, 'subscribe to');
    return this.addListener(wire, options?.queue, async (message) => {
      await handler(this.codec.decode(wire, message.data) as E);
    });
  }

  private addListener(
    wire: string,
    queue: string | undefined,
    onMessage: (message: IncomingMessage) => Promise<void>,
  ): BusSubscription {
    const active = new ActiveListener(wire, this.logger);
    active.attach(this.listen(wire, queue, (message) => active.track(onMessage(message))));
    this.listeners.add(active);
    return {
      ready: () => this.flush(),
      unsubscribe: async () => {
        this.listeners.delete(active);
        await active.stop(this.drainTimeoutMs);
      },
    };
  }

  // ---- work queues ---------------------------------------------------------------------------
  async enqueue<T>(queue: WorkQueue<T>, payload: T, options?: EnqueueOptions): Promise<EnqueueResult> {
    const wire = this.namespace.workSubject(queue);
    this.assertOpen(wire, 'enqueue on');
    const id = options?.id ?? randomUUID();
    if (id.length === 0 || id.length > 256) {
      throw new BusConfigurationError(wire, 'a dedupe id must be 1 to 256 characters long');
    }
    const { duplicate } = await this.store(queue, this.codec.encode(wire, payload), id);
    return { id, duplicate };
  }

  async consume<T>(
    queue: WorkQueue<T>,
    handler: (item: WorkItem<T>) => Promise<void>,
    options?: ConsumeOptions,
  ): Promise<BusSubscription> {
    const wire = this.namespace.workSubject(queue);
    this.assertOpen(wire, 'consume from');
    const concurrency = options?.concurrency ?? 1;
    const consumerName = options?.consumerName ?? DEFAULT_CONSUMER_NAME;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new BusConfigurationError(wire, `concurrency must be an integer >= 1, got ${concurrency}`);
    }
    if (!CONSUMER_NAME.test(consumerName)) {
      throw new BusConfigurationError(
        wire,
        `consumerName "${consumerName}" must be 1 to 64 letters, digits, "-" or "_"`,
      );
    }
    const pullers = await Promise.all(
      Array.from({ length: concurrency }, () => this.openPuller(queue, consumerName)),
    );
    if (this.closed) {
      // close() began while the consumer was being set up: it must not start pulling now.
      for (const puller of pullers) puller.stop();
      throw new BusClosedError(wire, 'consume from');
    }
    const storage = this.deadLetterStorage(queue);
    const runner = new WorkRunner(
      queue,
      wire,
      handler,
      this.codec,
      (record) =>
        storage.append(this.deadLetterCodec.encode(this.namespace.deadLetterSubject(queue), record)),
      this.logger,
      this.observer,
    );
    const active = new ActiveConsumer(queue.name, pullers, runner, this.logger);
    this.consumers.add(active);
    return {
      ready: () => this.flush(),
      unsubscribe: async () => {
        this.consumers.delete(active);
        await active.stop(false, this.drainTimeoutMs);
      },
    };
  }

  deadLetters<T>(queue: WorkQueue<T>): DeadLetterBox<T> {
    const subject = this.namespace.deadLetterSubject(queue);
    const storage = this.deadLetterStorage(queue);
    const decode = (stored: StoredDeadLetter): DeadLetter<T> => {
      const record = this.deadLetterCodec.decode(subject, stored.data) as DeadLetterRecord;
      return {
        sequence: stored.sequence,
        queue: record.queue,
        id: record.id,
        payload: record.payload as T | null,
        attempts: record.attempts,
        error: record.error,
        deadAt: record.deadAt,
      };
    };
    return {
      list: async (options) => {
        this.assertOpen(subject, 'list dead letters of');
        const limit = options?.limit ?? 100;
        const stored = await storage.list(options?.fromSequence ?? 1, limit);
        return stored.map(decode);
      },
      count: () => {
        this.assertOpen(subject, 'count dead letters of');
        return storage.count();
      },
      watch: async (handler) => {
        this.assertOpen(subject, 'watch dead letters of');
        const active = new ActiveListener(subject, this.logger);
        active.attach(
          await storage.watch((stored) =>
            active.track(Promise.resolve().then(() => handler(decode(stored)))),
          ),
        );
        this.listeners.add(active);
        return {
          ready: () => this.flush(),
          unsubscribe: async () => {
            this.listeners.delete(active);
            await active.stop(this.drainTimeoutMs);
          },
        };
      },
      remove: (sequence) => {
        this.assertOpen(subject, 'remove a dead letter of');
        return storage.remove(sequence);
      },
      requeue: async (sequence) => {
        this.assertOpen(subject, 'requeue a dead letter of');
        const data = await storage.get(sequence);
        if (data === null) {
          throw new BusConfigurationError(
            subject,
            `dead letter ${sequence} does not exist (already requeued or removed?)`,
          );
        }
        const letter = decode({ sequence, data });
        if (letter.payload === null) {
          throw new BusDecodeError(subject, `dead letter ${sequence} has no decodable payload to requeue`);
        }
        // A fresh id: the original one may still be inside the dedupe window.
        const result = await this.enqueue(queue, letter.payload, { id: `${letter.id}.requeued-${sequence}` });
        await storage.remove(sequence);
        return result;
      },
    };
  }

  // ---- life cycle ----------------------------------------------------------------------------
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.state = 'closing';
      await Promise.all([
        ...[...this.consumers].map((consumer) => consumer.stop(true, this.drainTimeoutMs)),
        ...[...this.listeners].map((listener) => listener.stop(this.drainTimeoutMs)),
      ]);
      this.consumers.clear();
      this.listeners.clear();
      await this.shutdown();
      this.state = 'closed';
    })();
    return this.closing;
  }

  /**
   * Ends this bus as a killed process would: no drain, no acks, no naks. Running work items'
   * signals abort; the server redelivers them after their ack wait. For tests and chaos drills.
   */
  async kill(): Promise<void> {
    this.state = 'closed';
    this.closing ??= Promise.resolve();
    for (const consumer of this.consumers) consumer.kill();
    this.consumers.clear();
    this.listeners.clear();
    await this.abandon();
  }

  protected assertOpen(target: string, operation: string): void {
    if (this.state !== 'open') throw new BusClosedError(target, operation);
  }
}

function isReplyEnvelope(value: unknown): value is ReplyEnvelope {
  if (typeof value !== 'object' || value === null) return false;
  const envelope = value as { ok?: unknown; error?: unknown };
  if (envelope.ok === true) return true;
  return envelope.ok === false && typeof envelope.error === 'object' && envelope.error !== null;
}

/** A subscription plus its running handlers, so unsubscribe and close can wait for them. */
class ActiveListener {
  private transport: TransportListener | undefined;
  private readonly running = new Set<Promise<void>>();
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly subject: string,
    private readonly logger: BusLogger,
  ) {}

  attach(transport: TransportListener): void {
    this.transport = transport;
  }

  track(work: Promise<void>): void {
    const tracked = work
      .catch((error: unknown) =>
        this.logger.error('bus handler failed', { subject: this.subject, error: carriedError(error) }),
      )
      .finally(() => this.running.delete(tracked));
    this.running.add(tracked);
  }

  stop(timeoutMs: number): Promise<void> {
    this.stopping ??= (async () => {
      await this.transport?.stop();
      await settleWithin([...this.running], timeoutMs);
    })();
    return this.stopping;
  }
}

interface StoppableConsumer {
  stop(abortRunning: boolean, timeoutMs: number): Promise<void>;
  kill(): void;
}

/** The pull loops of one consume() call: one loop per concurrency slot. */
class ActiveConsumer<T> implements StoppableConsumer {
  private stopped = false;
  private readonly stopSignal = new AbortController();
  private readonly loops: Promise<void>[];
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly queue: string,
    private readonly pullers: WorkPuller[],
    private readonly runner: WorkRunner<T>,
    private readonly logger: BusLogger,
  ) {
    this.loops = pullers.map((puller) => this.loop(puller));
  }

  private async loop(puller: WorkPuller): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      let delivery: WorkDelivery | null;
      const pulledAt = Date.now();
      try {
        delivery = await puller.next();
        failures = 0;
      } catch (error) {
        if (this.isStopped()) return;
        failures += 1;
        this.logger.warn('pulling work failed, retrying', {
          queue: this.queue,
          failures,
          error: carriedError(error),
        });
        await pause(Math.min(5_000, 250 * 2 ** Math.min(failures, 5)), this.stopSignal.signal);
        continue;
      }
      if (delivery === null) {
        // An empty pull that came back at once (server busy, limits hit): don't spin on it.
        if (Date.now() - pulledAt < 100) await pause(250, this.stopSignal.signal);
        continue;
      }
      if (this.isStopped()) {
        // Pulled while stopping: straight back to the queue.
        try {
          delivery.nak(0);
        } catch {
          // Redelivered after its ack wait instead.
        }
        return;
      }
      await this.runner.handle(delivery);
    }
  }

  /** A method, not a field read: the flag changes while the loop awaits. */
  private isStopped(): boolean {
    return this.stopped;
  }

  stop(abortRunning: boolean, timeoutMs: number): Promise<void> {
    this.stopping ??= (async () => {
      this.stopped = true;
      this.stopSignal.abort();
      for (const puller of this.pullers) puller.stop();
      if (abortRunning) this.runner.abortAll('the bus is shutting down', true);
      const settled = await this.runner.settle(timeoutMs);
      if (settled) await Promise.allSettled(this.loops);
      else {
        this.logger.warn(
          'work handlers still running after the drain timeout; their items will be redelivered',
          {
            queue: this.queue,
            running: this.runner.inFlight,
          },
        );
      }
    })();
    return this.stopping;
  }

  kill(): void {
    this.stopped = true;
    this.stopSignal.abort();
    for (const puller of this.pullers) puller.stop();
    this.runner.abandon();
  }
}

async function pause(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch {
    // Stopped while waiting.
  }
}

async function settleWithin(work: Promise<unknown>[], timeoutMs: number): Promise<void> {
  if (work.length === 0) return;
  const stop = new AbortController();
  await Promise.race([Promise.allSettled(work), pause(timeoutMs, stop.signal)]);
  stop.abort();
}
