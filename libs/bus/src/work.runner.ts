import { performance } from 'node:perf_hooks';
import { retryDelayAfter, type WorkQueue } from '@haven/contracts';
import type { BusLogger, BusObserver, WorkItem, WorkOutcome } from './bus.interface';
import { carriedError, type CarriedError } from './bus.errors';
import type { JsonCodec } from './json.codec';

/** One delivery of a stored work item, as a driver hands it over. */
export interface WorkDelivery {
  readonly data: Uint8Array;
  /** 1-based count of deliveries of this item, this one included. */
  readonly deliveryCount: number;
  /** Position in the work stream. */
  readonly sequence: number;
  readonly id: string;
  ack(): void;
  nak(delayMs: number): void;
  working(): void;
  term(): void;
}

/** What a dead letter holds on the wire (the sequence comes from its store). */
export interface DeadLetterRecord {
  queue: string;
  id: string;
  payload: unknown;
  attempts: number;
  error: { code: string; message: string };
  deadAt: string;
}

const MAX_ERROR_MESSAGE = 4_096;

/**
 * The delivery rules both drivers share: run the handler, ack on success, retry with the queue's
 * backoff on failure, dead-letter after the last attempt. Servers are told maxDeliver + 1, so an
 * item whose last attempt died without an ack comes back once more and is dead-lettered here,
 * with a reason, instead of lingering undelivered in the stream.
 */
export class WorkRunner<T> {
  private readonly running = new Set<Promise<void>>();
  private readonly controllers = new Set<AbortController>();
  private handingBack = false;
  private abandoned = false;

  constructor(
    private readonly queue: WorkQueue<T>,
    private readonly subject: string,
    private readonly handler: (item: WorkItem<T>) => Promise<void>,
    private readonly codec: JsonCodec,
    private readonly deadLetter: (record: DeadLetterRecord) => Promise<void>,
    private readonly logger: BusLogger,
    private readonly observer: BusObserver = {},
  ) {}

  get inFlight(): number {
    return this.running.size;
  }

  handle(delivery: WorkDelivery): Promise<void> {
    const started = performance.now();
    this.observer.workStarted?.(this.queue.name);
    const run = this.run(delivery)
      .then((outcome) => {
        if (outcome !== undefined)
          this.observer.workSettled?.(this.queue.name, outcome, performance.now() - started);
      })
      .finally(() => this.running.delete(run));
    this.running.add(run);
    return run;
  }

  /**
   * Aborts every running item's signal. With `handBack`, a handler that then fails returns its
   * item to the queue at once (shutdown) instead of counting a failed attempt.
   */
  abortAll(reason: string, handBack: boolean): void {
    this.handingBack = handBack;
    for (const controller of this.controllers) controller.abort(new Error(reason));
  }

  /** The process is considered dead: signals abort and whatever handlers do next is dropped. */
  abandon(): void {
    this.abandoned = true;
    this.abortAll('the bus was killed', false);
  }

  /** Resolves when the running handlers are done, or after `timeoutMs`; true when all settled. */
  async settle(timeoutMs: number): Promise<boolean> {
    if (this.running.size === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const all = Promise.allSettled([...this.running]).then(() => true as const);
    try {
      return await Promise.race([all, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves with how the delivery ended, or undefined when the runner was abandoned. */
  private async run(delivery: WorkDelivery): Promise<WorkOutcome | undefined> {
    const { queue } = this;
    let payload: T;
    try {
      payload = this.codec.decode(this.subject, delivery.data) as T;
    } catch (error) {
      const text = new TextDecoder().decode(delivery.data.subarray(0, 200));
      return this.bury(delivery, null, delivery.deliveryCount, {
        code: 'BUS_PAYLOAD_UNDECODABLE',
        message: `${carriedError(error).message}; first bytes: ${text}`,
      });
    }
    if (delivery.deliveryCount > queue.maxDeliver) {
      return this.bury(delivery, payload, queue.maxDeliver, {
        code: 'BUS_ACK_WAIT_EXPIRED',
        message: `attempt ${queue.maxDeliver} of ${queue.maxDeliver} was neither acked nor failed within the ack wait of ${queue.ackWaitMs} ms (its consumer died, hung or lost its connection)`,
      });
    }
    const controller = new AbortController();
    this.controllers.add(controller);
    const heartbeat = new WorkingHeartbeat(delivery, queue.ackWaitMs);
    const item: WorkItem<T> = {
      payload,
      attempt: delivery.deliveryCount,
      maxDeliver: queue.maxDeliver,
      id: delivery.id,
      working: () => heartbeat.beat(),
      signal: controller.signal,
    };
    try {
      await this.handler(item);
      heartbeat.stop();
      if (this.abandoned) return undefined;
      this.settleDelivery(delivery, 'ack', () => delivery.ack());
      return 'acked';
    } catch (error) {
      heartbeat.stop();
      if (this.abandoned) return undefined;
      if (controller.signal.aborted && this.handingBack) {
        this.settleDelivery(delivery, 'hand back', () => delivery.nak(0));
        return 'handed-back';
      }
      const carried = carriedError(error);
      if (delivery.deliveryCount >= queue.maxDeliver) {
        return await this.bury(delivery, payload, delivery.deliveryCount, carried);
      }
      const delay = retryDelayAfter(queue, delivery.deliveryCount);
      this.logger.warn('work item failed, will retry', {
        queue: queue.name,
        id: delivery.id,
        attempt: delivery.deliveryCount,
        maxDeliver: queue.maxDeliver,
        retryInMs: delay,
        error: carried,
      });
      this.settleDelivery(delivery, 'nak', () => delivery.nak(delay));
      return 'retried';
    } finally {
      this.controllers.delete(controller);
    }
  }

  private async bury(
    delivery: WorkDelivery,
    payload: T | null,
    attempts: number,
    error: Pick<CarriedError, 'code' | 'message'>,
  ): Promise<WorkOutcome> {
    const record: DeadLetterRecord = {
      queue: this.queue.name,
      id: delivery.id,
      payload,
      attempts,
      error: { code: error.code, message: error.message.slice(0, MAX_ERROR_MESSAGE) },
      deadAt: new Date().toISOString(),
    };
    try {
      await this.deadLetter(record);
    } catch (failure) {
      // Not terminated: the item comes back and is dead-lettered on its next delivery.
      this.logger.error('could not store dead letter, item stays queued', {
        queue: this.queue.name,
        id: delivery.id,
        error: carriedError(failure),
      });
      this.settleDelivery(delivery, 'nak', () =>
        delivery.nak(retryDelayAfter(this.queue, delivery.deliveryCount)),
      );
      return 'retried';
    }
    this.logger.error('work item dead-lettered', {
      queue: this.queue.name,
      id: delivery.id,
      attempts,
      error: record.error,
    });
    this.settleDelivery(delivery, 'term', () => delivery.term());
    return 'dead-lettered';
  }

  private settleDelivery(delivery: WorkDelivery, what: string, settle: () => void): void {
    try {
      settle();
    } catch (error) {
      // The connection is gone: the server redelivers after the ack wait, which is the contract.
      this.logger.warn(`work item ${what} not sent, it will be redelivered after its ack wait`, {
        queue: this.queue.name,
        id: delivery.id,
        error: carriedError(error),
      });
    }
  }
}

/**
 * Forwards `working()` at most every ackWait/10 (100 ms..1 s), with a trailing send, so a handler
 * may call it on every chunk without flooding the server.
 */
class WorkingHeartbeat {
  private readonly intervalMs: number;
  private lastSent = 0;
  private trailing: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly delivery: WorkDelivery,
    ackWaitMs: number,
  ) {
    this.intervalMs = Math.min(1_000, Math.max(100, Math.floor(ackWaitMs / 10)));
  }

  beat(): void {
    if (this.stopped) return;
    const now = Date.now();
    if (now - this.lastSent >= this.intervalMs) {
      this.send(now);
      return;
    }
    this.trailing ??= setTimeout(
      () => {
        this.trailing = undefined;
        if (!this.stopped) this.send(Date.now());
      },
      this.intervalMs - (now - this.lastSent),
    );
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.trailing);
  }

  private send(now: number): void {
    this.lastSent = now;
    try {
      this.delivery.working();
    } catch {
      // A lost connection ends in a redelivery; the handler learns through its signal on shutdown.
    }
  }
}
