import type { WorkQueue } from '@haven/contracts';
import {
  BaseBus,
  type BaseBusSettings,
  type DeadLetterStorage,
  type IncomingMessage,
  type TransportListener,
  type WorkPuller,
} from '../bus.base';
import { BusNoRespondersError, BusTimeoutError } from '../bus.errors';
import type { BusHealth } from '../bus.interface';
import type { WorkDelivery } from '../work.runner';
import { decodeNotice, MemoryBroker } from './memory.broker';

/**
 * The in-process driver for the all-in-one mode: the same semantics as NATS (timeouts, no
 * responders, queue groups, ack deadlines, bounded redelivery, dead letters, dedupe), kept in the
 * process's memory. Work does not survive a restart of the process.
 */
export class MemoryBus extends BaseBus {
  /** Identity of this client on the broker, so kill() drops exactly its subscriptions. */
  private readonly connection = {};
  private killed = false;

  constructor(
    settings: BaseBusSettings,
    readonly broker: MemoryBroker,
  ) {
    super(settings);
  }

  protected sendRequest(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      let answered = false;
      const timer = setTimeout(() => {
        answered = true;
        reject(new BusTimeoutError(subject, timeoutMs));
      }, timeoutMs);
      const receivers = this.broker.publish(subject, data, (reply) => {
        if (answered) return;
        answered = true;
        clearTimeout(timer);
        resolve(reply);
      });
      if (receivers === 0) {
        answered = true;
        clearTimeout(timer);
        reject(new BusNoRespondersError(subject));
      }
    });
  }

  protected listen(
    subject: string,
    queue: string | undefined,
    onMessage: (message: IncomingMessage) => void,
  ): TransportListener {
    const remove = this.broker.subscribe(subject, queue, this.connection, (data, reply) => {
      if (!this.killed) onMessage({ data, reply });
    });
    return {
      // Like a NATS drain: nothing new arrives, messages already on their way are still handled.
      stop: async () => {
        remove();
        await new Promise((resolve) => setImmediate(resolve));
      },
    };
  }

  protected send(subject: string, data: Uint8Array): Promise<void> {
    this.broker.publish(subject, data);
    return Promise.resolve();
  }

  protected store(queue: WorkQueue<unknown>, data: Uint8Array, id: string): Promise<{ duplicate: boolean }> {
    return Promise.resolve(this.workStream(queue).add(id, data));
  }

  protected openPuller(queue: WorkQueue<unknown>, consumerName: string): Promise<WorkPuller> {
    const stream = this.workStream(queue);
    stream.bindConsumer(consumerName, queue.ackWaitMs, queue.maxDeliver + 1);
    let stopped = false;
    let cancel: (() => void) | undefined;
    const puller: WorkPuller = {
      next: async () => {
        if (stopped) return null;
        const pull = stream.pull(this.connection);
        cancel = pull.cancel;
        const delivery = await pull.delivery;
        cancel = undefined;
        return delivery === null ? null : this.guard(delivery);
      },
      stop: () => {
        stopped = true;
        cancel?.();
      },
    };
    return Promise.resolve(puller);
  }

  /** After kill(), the dead process's acks never reach the broker. */
  private guard(delivery: WorkDelivery): WorkDelivery {
    const alive = (): boolean => !this.killed;
    return {
      data: delivery.data,
      deliveryCount: delivery.deliveryCount,
      sequence: delivery.sequence,
      id: delivery.id,
      ack: () => alive() && delivery.ack(),
      nak: (delayMs) => alive() && delivery.nak(delayMs),
      working: () => alive() && delivery.working(),
      term: () => alive() && delivery.term(),
    };
  }

  protected deadLetterStorage(queue: WorkQueue<unknown>): DeadLetterStorage {
    const subject = this.namespace.deadLetterSubject(queue);
    const store = this.broker.deadLetterStore(subject);
    return {
      append: (data) => Promise.resolve(store.append(data)),
      list: (fromSequence, limit) => Promise.resolve(store.list(fromSequence, limit)),
      get: (sequence) => Promise.resolve(store.get(sequence)),
      count: () => Promise.resolve(store.count()),
      remove: (sequence) => Promise.resolve(store.remove(sequence)),
      watch: (onLetter) =>
        Promise.resolve(this.listen(subject, undefined, (message) => onLetter(decodeNotice(message.data)))),
    };
  }

  private workStream(queue: WorkQueue<unknown>) {
    return this.broker.workStream(this.namespace.workSubject(queue), queue.dedupeWindowMs);
  }

  health(): Promise<BusHealth> {
    return Promise.resolve(
      this.closed
        ? { ok: false, detail: `in-process bus "${this.name}" is closed` }
        : { ok: true, detail: `in-process bus "${this.name}" open` },
    );
  }

  protected flush(): Promise<void> {
    return Promise.resolve();
  }

  protected shutdown(): Promise<void> {
    this.broker.dropOwner(this.connection);
    return Promise.resolve();
  }

  protected abandon(): Promise<void> {
    this.killed = true;
    this.broker.dropOwner(this.connection);
    return Promise.resolve();
  }
}
