import {
  AckPolicy,
  connect,
  DebugEvents,
  DeliverPolicy,
  DiscardPolicy,
  ErrorCode,
  Events,
  nanos,
  RetentionPolicy,
  StorageType,
  type Consumer,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type NatsConnection,
  type NatsError,
  type StreamConfig,
} from 'nats';
import type { WorkQueue } from '@haven/contracts';
import {
  BaseBus,
  DEFAULT_CONSUMER_NAME,
  type BaseBusSettings,
  type DeadLetterStorage,
  type IncomingMessage,
  type StoredDeadLetter,
  type TransportListener,
  type WorkPuller,
} from '../bus.base';
import {
  BusClosedError,
  BusConfigurationError,
  BusConnectionError,
  BusError,
  BusNoRespondersError,
  BusPayloadTooLargeError,
  BusTimeoutError,
} from '../bus.errors';
import type { BusHealth, NatsBusConfig } from '../bus.interface';
import type { WorkDelivery } from '../work.runner';

const HEADER_ROOM_BYTES = 16 * 1024;
const DEFAULT_PULL_EXPIRES_MS = 10_000;
const DEFAULT_DEAD_LETTER_MAX_AGE_MS = 30 * 24 * 3600 * 1000;
// JetStream API error codes (nats-server errors.json).
const JS_STREAM_NOT_FOUND = 10059;
const JS_CONSUMER_NOT_FOUND = 10014;
const JS_NO_MESSAGE_FOUND = 10037;

export interface NatsBusOptions {
  pullExpiresMs: number;
  deadLetterMaxAgeMs: number;
  url: string;
}

/**
 * The distributed driver: NATS core request/reply and events, JetStream work-queue streams with
 * one durable pull consumer per queue, explicit acks, in-progress acks, naks with delay and a
 * dead-letter stream per queue. Reconnects forever after the first connection.
 */
export class NatsBus extends BaseBus {
  private readonly js: JetStreamClient;
  private readonly ensured = new Map<string, Promise<void>>();
  private readonly consumersByKey = new Map<string, Promise<Consumer>>();
  private disconnected = false;

  private constructor(
    settings: BaseBusSettings,
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly options: NatsBusOptions,
  ) {
    super(settings);
    this.js = nc.jetstream({ timeout: this.requestTimeoutMs });
    void this.watchStatus();
  }

  static async connect(
    config: NatsBusConfig,
    base: Omit<BaseBusSettings, 'payloadLimitBytes' | 'deadLetterLimitBytes'> & { maxPayloadBytes: number },
  ): Promise<NatsBus> {
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers: config.url.split(',').map((server) => server.trim()),
        name: config.name,
        user: config.user,
        pass: config.pass,
        token: config.token,
        timeout: config.connectTimeoutMs ?? 5_000,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 1_000,
      });
    } catch (error) {
      throw new BusConnectionError(redactUrl(config.url), describe(error), error);
    }
    let jsm: JetStreamManager;
    try {
      jsm = await nc.jetstreamManager();
    } catch (error) {
      await nc.close();
      throw new BusConnectionError(
        redactUrl(config.url),
        `JetStream is not available (${describe(error)}); start nats-server with -js`,
        error,
      );
    }
    const serverMax = nc.info?.max_payload ?? 1024 * 1024;
    const payloadLimitBytes = Math.min(base.maxPayloadBytes, serverMax - HEADER_ROOM_BYTES);
    return new NatsBus({ ...base, payloadLimitBytes, deadLetterLimitBytes: serverMax - 1024 }, nc, jsm, {
      url: redactUrl(config.url),
      pullExpiresMs: Math.max(1_000, config.pullExpiresMs ?? DEFAULT_PULL_EXPIRES_MS),
      deadLetterMaxAgeMs: config.deadLetterMaxAgeMs ?? DEFAULT_DEAD_LETTER_MAX_AGE_MS,
    });
  }

  /** The underlying connection, for health probes and tests. */
  get connection(): NatsConnection {
    return this.nc;
  }

  private async watchStatus(): Promise<void> {
    for await (const status of this.nc.status()) {
      switch (status.type) {
        case Events.Disconnect:
          this.disconnected = true;
          this.logger.warn('bus disconnected from NATS, reconnecting', {
            bus: this.name,
            server: status.data,
          });
          break;
        case Events.Reconnect:
          this.disconnected = false;
          // A restarted server without persistence lost its streams: make them again on demand.
          this.ensured.clear();
          this.consumersByKey.clear();
          this.logger.warn('bus reconnected to NATS', { bus: this.name, server: status.data });
          break;
        case Events.Error:
          this.logger.error('NATS connection error', { bus: this.name, error: JSON.stringify(status.data) });
          break;
        case Events.LDM:
        case Events.Update:
        case DebugEvents.Reconnecting:
        case DebugEvents.PingTimer:
        case DebugEvents.StaleConnection:
        case DebugEvents.ClientInitiatedReconnect:
          break;
      }
    }
  }

  // ---- core ----------------------------------------------------------------------------------
  protected async sendRequest(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    try {
      const reply = await this.nc.request(subject, data, { timeout: timeoutMs });
      return reply.data;
    } catch (error) {
      throw this.translate(error, subject, timeoutMs, data.byteLength);
    }
  }

  protected listen(
    subject: string,
    queue: string | undefined,
    onMessage: (message: IncomingMessage) => void,
  ): TransportListener {
    const subscription = this.nc.subscribe(subject, {
      queue,
      callback: (error, msg) => {
        if (error !== null) {
          this.logger.error('subscription failed', { subject, error: describe(error) });
          return;
        }
        onMessage({
          data: msg.data,
          reply: msg.reply === undefined || msg.reply === '' ? undefined : (reply) => msg.respond(reply),
        });
      },
    });
    return {
      stop: async () => {
        if (subscription.isClosed() || this.nc.isClosed()) return;
        try {
          // A drain needs the server; without one, stop listening at once.
          if (this.disconnected) subscription.unsubscribe();
          else await withTimeout(subscription.drain(), 5_000, `drain of ${subject}`);
        } catch (error) {
          this.logger.warn('subscription drain failed', { subject, error: describe(error) });
          if (!subscription.isClosed()) subscription.unsubscribe();
        }
      },
    };
  }

  protected send(subject: string, data: Uint8Array): Promise<void> {
    try {
      this.nc.publish(subject, data);
    } catch (error) {
      return Promise.reject(this.translate(error, subject, 0, data.byteLength));
    }
    return Promise.resolve();
  }

  // ---- work queues ---------------------------------------------------------------------------
  protected async store(
    queue: WorkQueue<unknown>,
    data: Uint8Array,
    id: string,
  ): Promise<{ duplicate: boolean }> {
    const subject = this.namespace.workSubject(queue);
    const publish = async (): Promise<{ duplicate: boolean }> => {
      await this.ensureStreams(queue);
      const ack = await this.js.publish(subject, data, {
        msgID: id,
        expect: { streamName: this.namespace.workStream(queue) },
      });
      return { duplicate: ack.duplicate };
    };
    try {
      return await publish();
    } catch (error) {
      if ((error as Partial<NatsError> | null)?.code !== ErrorCode.NoResponders) {
        throw this.translate(error, subject, this.requestTimeoutMs, data.byteLength);
      }
    }
    // No stream took it: it was deleted under us (or the server lost it). Set up again, once.
    this.forget(queue, DEFAULT_CONSUMER_NAME);
    try {
      return await publish();
    } catch (error) {
      throw this.translate(error, subject, this.requestTimeoutMs, data.byteLength);
    }
  }

  protected async openPuller(queue: WorkQueue<unknown>, consumerName: string): Promise<WorkPuller> {
    let consumer: Consumer | undefined = await this.durableConsumer(queue, consumerName);
    let stopped = false;
    // A function, not a variable read: stop() flips the flag while next() awaits.
    const isStopped = (): boolean => stopped;
    let batch: ConsumerMessages | undefined;
    return {
      next: async () => {
        if (stopped) return null;
        try {
          consumer ??= await this.durableConsumer(queue, consumerName);
          // One message per pull: nothing waits in a local buffer while its ack wait runs out.
          const current = await consumer.fetch({ max_messages: 1, expires: this.options.pullExpiresMs });
          batch = current;
          if (isStopped()) await current.close();
          for await (const message of current) return this.delivery(message);
          return null;
        } catch (error) {
          // The stream or consumer may have been deleted under us: set them up again next time.
          consumer = undefined;
          this.forget(queue, consumerName);
          throw error;
        } finally {
          batch = undefined;
        }
      },
      stop: () => {
        stopped = true;
        void batch?.close().catch(() => undefined);
      },
    };
  }

  private forget(queue: WorkQueue<unknown>, consumerName: string): void {
    const stream = this.namespace.workStream(queue);
    this.ensured.delete(stream);
    this.consumersByKey.delete(`${stream}/${consumerName}`);
  }

  private delivery(message: JsMsg): WorkDelivery {
    return {
      data: message.data,
      deliveryCount: message.info.deliveryCount,
      sequence: message.seq,
      id: message.headers?.get('Nats-Msg-Id') || `seq-${message.seq}`,
      ack: () => message.ack(),
      nak: (delayMs) => message.nak(delayMs > 0 ? delayMs : undefined),
      working: () => message.working(),
      term: () => message.term(),
    };
  }

  private durableConsumer(queue: WorkQueue<unknown>, consumerName: string): Promise<Consumer> {
    const stream = this.namespace.workStream(queue);
    const key = `${stream}/${consumerName}`;
    let consumer = this.consumersByKey.get(key);
    if (consumer === undefined) {
      consumer = this.ensureConsumer(queue, consumerName).then(() =>
        this.js.consumers.get(stream, consumerName),
      );
      consumer.catch(() => this.consumersByKey.delete(key));
      this.consumersByKey.set(key, consumer);
    }
    return consumer;
  }

  private async ensureConsumer(queue: WorkQueue<unknown>, consumerName: string): Promise<void> {
    await this.ensureStreams(queue);
    const stream = this.namespace.workStream(queue);
    const wanted = {
      ack_wait: nanos(queue.ackWaitMs),
      // One more than the queue's attempts: the extra delivery dead-letters an item whose last
      // attempt died without an ack (see WorkRunner).
      max_deliver: queue.maxDeliver + 1,
    };
    try {
      const info = await this.jsm.consumers.info(stream, consumerName);
      if (info.config.ack_wait !== wanted.ack_wait || info.config.max_deliver !== wanted.max_deliver) {
        await this.jsm.consumers.update(stream, consumerName, wanted);
      }
      return;
    } catch (error) {
      if (apiErrorCode(error) !== JS_CONSUMER_NOT_FOUND) throw this.setupError(stream, error);
    }
    try {
      await this.jsm.consumers.add(stream, {
        ...wanted,
        durable_name: consumerName,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        filter_subject: this.namespace.workSubject(queue),
      });
    } catch (error) {
      throw this.setupError(
        stream,
        error,
        'a work queue has one durable consumer: every worker of the queue must use the same consumerName',
      );
    }
  }

  /** Creates or updates the work stream and the dead-letter stream, once per bus. */
  private ensureStreams(queue: WorkQueue<unknown>): Promise<void> {
    const key = this.namespace.workStream(queue);
    let ensured = this.ensured.get(key);
    if (ensured === undefined) {
      ensured = Promise.all([
        this.ensureStream({
          name: this.namespace.workStream(queue),
          subjects: [this.namespace.workSubject(queue)],
          retention: RetentionPolicy.Workqueue,
          storage: StorageType.File,
          discard: DiscardPolicy.Old,
          duplicate_window: nanos(queue.dedupeWindowMs),
        }),
        this.ensureStream({
          name: this.namespace.deadLetterStream(queue),
          subjects: [this.namespace.deadLetterSubject(queue)],
          retention: RetentionPolicy.Limits,
          storage: StorageType.File,
          discard: DiscardPolicy.Old,
          max_age: nanos(this.options.deadLetterMaxAgeMs),
          duplicate_window: nanos(120_000),
        }),
      ]).then(() => undefined);
      ensured.catch(() => this.ensured.delete(key));
      this.ensured.set(key, ensured);
    }
    return ensured;
  }

  private async ensureStream(config: Partial<StreamConfig> & { name: string }): Promise<void> {
    try {
      const info = await this.jsm.streams.info(config.name);
      const current = info.config as unknown as Record<string, unknown>;
      const changed = Object.entries(config).some(
        ([key, value]) => JSON.stringify(current[key]) !== JSON.stringify(value),
      );
      if (changed) await this.jsm.streams.update(config.name, { ...info.config, ...config });
      return;
    } catch (error) {
      if (apiErrorCode(error) !== JS_STREAM_NOT_FOUND) throw this.setupError(config.name, error);
    }
    try {
      await this.jsm.streams.add(config);
    } catch (error) {
      // Another process created it in between: fine when the config matches.
      try {
        await this.jsm.streams.info(config.name);
      } catch {
        throw this.setupError(config.name, error);
      }
    }
  }

  // ---- dead letters --------------------------------------------------------------------------
  protected deadLetterStorage(queue: WorkQueue<unknown>): DeadLetterStorage {
    const stream = this.namespace.deadLetterStream(queue);
    const subject = this.namespace.deadLetterSubject(queue);
    const ready = (): Promise<void> => this.ensureStreams(queue);
    const get = async (sequence: number): Promise<Uint8Array | null> => {
      try {
        return (await this.jsm.streams.getMessage(stream, { seq: sequence })).data;
      } catch (error) {
        if (apiErrorCode(error) === JS_NO_MESSAGE_FOUND) return null;
        throw this.translate(error, stream, this.requestTimeoutMs);
      }
    };
    return {
      append: async (data) => {
        await ready();
        try {
          await this.js.publish(subject, data, { expect: { streamName: stream } });
        } catch (error) {
          throw this.translate(error, subject, this.requestTimeoutMs);
        }
      },
      list: async (fromSequence, limit) => {
        await ready();
        const { state } = await this.jsm.streams.info(stream);
        const found: StoredDeadLetter[] = [];
        for (let sequence = Math.max(fromSequence, state.first_seq); sequence <= state.last_seq; sequence++) {
          if (found.length >= limit) break;
          const data = await get(sequence);
          if (data !== null) found.push({ sequence, data });
        }
        return found;
      },
      get: async (sequence) => {
        await ready();
        return get(sequence);
      },
      count: async () => {
        await ready();
        return (await this.jsm.streams.info(stream)).state.messages;
      },
      remove: async (sequence) => {
        await ready();
        // Servers answer a delete of a missing sequence with various errors (10037, 10057): ask first.
        if ((await get(sequence)) === null) return false;
        try {
          return await this.jsm.streams.deleteMessage(stream, sequence, false);
        } catch (error) {
          if ((await get(sequence)) === null) return false;
          throw this.translate(error, stream, this.requestTimeoutMs);
        }
      },
      watch: async (onLetter) => {
        await ready();
        const { state } = await this.jsm.streams.info(stream);
        // Start right after what exists now, so nothing appended from here on is missed.
        const consumer = await this.js.consumers.get(stream, {
          deliver_policy: DeliverPolicy.StartSequence,
          opt_start_seq: state.last_seq + 1,
        });
        const messages = await consumer.consume({
          callback: (message) => onLetter({ sequence: message.seq, data: message.data }),
        });
        return {
          stop: async () => {
            await messages.close();
          },
        };
      },
    };
  }

  // ---- life cycle ----------------------------------------------------------------------------
  async health(): Promise<BusHealth> {
    if (this.closed || this.nc.isClosed()) return { ok: false, detail: `bus "${this.name}" is closed` };
    if (this.disconnected) {
      return { ok: false, detail: `bus "${this.name}" lost ${this.options.url}, reconnecting` };
    }
    try {
      const rtt = await withTimeout(this.nc.rtt(), 2_000, 'NATS ping');
      await withTimeout(this.jsm.getAccountInfo(), 2_000, 'JetStream account info');
      return {
        ok: true,
        detail: `connected to ${this.nc.getServer()} (rtt ${rtt.toFixed(1)} ms, JetStream ok)`,
      };
    } catch (error) {
      return { ok: false, detail: `NATS at ${this.nc.getServer()} not answering: ${describe(error)}` };
    }
  }

  protected async flush(): Promise<void> {
    try {
      await this.nc.flush();
    } catch (error) {
      throw this.translate(error, this.options.url, this.requestTimeoutMs);
    }
  }

  protected async shutdown(): Promise<void> {
    if (this.nc.isClosed()) return;
    try {
      // Without a server a drain would wait for the reconnect forever.
      if (this.disconnected) throw new Error('disconnected');
      await withTimeout(this.nc.drain(), 5_000, 'connection drain');
    } catch {
      if (!this.nc.isClosed()) await this.nc.close();
    }
  }

  protected async abandon(): Promise<void> {
    if (!this.nc.isClosed()) await this.nc.close();
  }

  private translate(error: unknown, subject: string, timeoutMs: number, sizeBytes = 0): Error {
    if (error instanceof BusError) return error;
    const code = (error as Partial<NatsError> | null)?.code;
    switch (code) {
      case ErrorCode.NoResponders:
        return new BusNoRespondersError(subject);
      case ErrorCode.Timeout:
        return new BusTimeoutError(subject, timeoutMs);
      case ErrorCode.MaxPayloadExceeded:
        return new BusPayloadTooLargeError(subject, sizeBytes, this.payloadLimitBytes);
      case ErrorCode.ConnectionClosed:
      case ErrorCode.ConnectionDraining:
        return new BusClosedError(subject, 'use');
      case undefined:
      default:
        return new BusConnectionError(this.options.url, `${subject}: ${describe(error)}`, error);
    }
  }

  private setupError(target: string, error: unknown, hint?: string): BusError {
    return new BusConfigurationError(
      target,
      `the NATS server refused it (${describe(error)})${hint === undefined ? '' : `; ${hint}`}`,
      error,
    );
  }
}

/** Credentials in a URL (`nats://user:pass@host`) never reach a message or a log. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^/@,]*@/g, '//***@');
}

function apiErrorCode(error: unknown): number | undefined {
  return (error as Partial<NatsError> | null)?.api_error?.err_code;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
