import { randomInt } from 'node:crypto';
import { BusConfigurationError } from '../bus.errors';
import type { StoredDeadLetter } from '../bus.base';
import type { WorkDelivery } from '../work.runner';

type Deliver = (data: Uint8Array, reply: ((data: Uint8Array) => void) | undefined) => void;

interface MemorySubscriber {
  readonly queue: string | undefined;
  readonly deliver: Deliver;
  readonly owner: object;
}

/**
 * The in-process stand-in for a NATS server: subjects with queue groups, and work streams with
 * durable consumers, ack deadlines, delayed naks, bounded deliveries and dedupe windows. Every bus
 * created on the same broker talks to the others, as clients of one server do.
 */
export class MemoryBroker {
  private static processBroker: MemoryBroker | undefined;
  private readonly subscribers = new Map<string, Set<MemorySubscriber>>();
  private readonly workStreams = new Map<string, MemoryWorkStream>();
  private readonly deadLetterStores = new Map<string, MemoryDeadLetterStore>();

  /** One broker for the whole process, for buses that must reach each other without passing it around. */
  static shared(): MemoryBroker {
    MemoryBroker.processBroker ??= new MemoryBroker();
    return MemoryBroker.processBroker;
  }

  subscribe(subject: string, queue: string | undefined, owner: object, deliver: Deliver): () => void {
    let set = this.subscribers.get(subject);
    if (set === undefined) {
      set = new Set();
      this.subscribers.set(subject, set);
    }
    const subscriber: MemorySubscriber = { queue, deliver, owner };
    set.add(subscriber);
    return () => {
      set.delete(subscriber);
      if (set.size === 0 && this.subscribers.get(subject) === set) this.subscribers.delete(subject);
    };
  }

  /** Removes every subscription of one client (a killed connection). */
  dropOwner(owner: object): void {
    for (const [subject, set] of this.subscribers) {
      for (const subscriber of set) if (subscriber.owner === owner) set.delete(subscriber);
      if (set.size === 0) this.subscribers.delete(subject);
    }
    for (const stream of this.workStreams.values()) stream.dropOwner(owner);
  }

  /**
   * Delivers to every plain subscriber and to one member of each queue group, asynchronously as
   * a network would. Returns how many received it (0 means "no responders" for a request).
   */
  publish(subject: string, data: Uint8Array, reply?: (data: Uint8Array) => void): number {
    const set = this.subscribers.get(subject);
    if (set === undefined) return 0;
    const groups = new Map<string, MemorySubscriber[]>();
    const receivers: MemorySubscriber[] = [];
    for (const subscriber of set) {
      if (subscriber.queue === undefined) receivers.push(subscriber);
      else {
        const members = groups.get(subscriber.queue) ?? [];
        members.push(subscriber);
        groups.set(subscriber.queue, members);
      }
    }
    for (const members of groups.values()) {
      receivers.push(members[members.length === 1 ? 0 : randomInt(members.length)]);
    }
    for (const receiver of receivers) {
      // Each receiver gets its own copy, as over a wire.
      const copy = data.slice();
      setImmediate(() => receiver.deliver(copy, reply));
    }
    return receivers.length;
  }

  workStream(subject: string, dedupeWindowMs: number): MemoryWorkStream {
    let stream = this.workStreams.get(subject);
    if (stream === undefined) {
      stream = new MemoryWorkStream(subject);
      this.workStreams.set(subject, stream);
    }
    stream.dedupeWindowMs = dedupeWindowMs;
    return stream;
  }

  deadLetterStore(subject: string): MemoryDeadLetterStore {
    let store = this.deadLetterStores.get(subject);
    if (store === undefined) {
      store = new MemoryDeadLetterStore(subject, this);
      this.deadLetterStores.set(subject, store);
    }
    return store;
  }
}

interface StoredItem {
  readonly sequence: number;
  readonly id: string;
  readonly data: Uint8Array;
  deliveries: number;
  state: 'ready' | 'delayed' | 'delivered';
  /** Bumped on every delivery, so a late ack of an earlier delivery is recognised and ignored. */
  generation: number;
  timer: NodeJS.Timeout | undefined;
  holder: object | undefined;
}

interface PullWaiter {
  readonly owner: object;
  readonly resolve: (delivery: WorkDelivery | null) => void;
}

/** A work-queue stream with its one durable consumer: each item is held until acked or terminated. */
export class MemoryWorkStream {
  dedupeWindowMs = 120_000;
  private nextSequence = 1;
  private readonly items = new Map<number, StoredItem>();
  private readonly dedupe = new Map<string, number>();
  private readonly waiters: PullWaiter[] = [];
  private consumer: { name: string; ackWaitMs: number; maxDeliveries: number } | undefined;

  constructor(readonly subject: string) {}

  get size(): number {
    return this.items.size;
  }

  add(id: string, data: Uint8Array): { duplicate: boolean } {
    const now = Date.now();
    for (const [known, expires] of this.dedupe) if (expires <= now) this.dedupe.delete(known);
    if (this.dedupe.has(id)) return { duplicate: true };
    this.dedupe.set(id, now + this.dedupeWindowMs);
    const sequence = this.nextSequence++;
    this.items.set(sequence, {
      sequence,
      id,
      data: data.slice(),
      deliveries: 0,
      state: 'ready',
      generation: 0,
      timer: undefined,
      holder: undefined,
    });
    this.dispatch();
    return { duplicate: false };
  }

  /** Creates or updates the durable consumer; a work queue admits one consumer name. */
  bindConsumer(name: string, ackWaitMs: number, maxDeliveries: number): void {
    if (this.consumer !== undefined && this.consumer.name !== name) {
      throw new BusConfigurationError(
        this.subject,
        `work queue already consumed by "${this.consumer.name}", not "${name}": every worker of a work queue must use the same consumerName`,
      );
    }
    this.consumer = { name, ackWaitMs, maxDeliveries };
  }

  /** A pull request for one item; `cancel` resolves it with null. */
  pull(owner: object): { delivery: Promise<WorkDelivery | null>; cancel: () => void } {
    let waiter: PullWaiter | undefined;
    const delivery = new Promise<WorkDelivery | null>((resolve) => {
      waiter = { owner, resolve };
      this.waiters.push(waiter);
    });
    this.dispatch();
    return {
      delivery,
      cancel: () => {
        const index = waiter === undefined ? -1 : this.waiters.indexOf(waiter);
        if (index >= 0) {
          this.waiters.splice(index, 1);
          waiter?.resolve(null);
        }
      },
    };
  }

  dropOwner(owner: object): void {
    for (let index = this.waiters.length - 1; index >= 0; index--) {
      const waiter = this.waiters[index];
      if (waiter.owner === owner) {
        this.waiters.splice(index, 1);
        waiter.resolve(null);
      }
    }
  }

  private dispatch(): void {
    const consumer = this.consumer;
    if (consumer === undefined) return;
    while (this.waiters.length > 0) {
      let next: StoredItem | undefined;
      for (const item of this.items.values()) {
        if (item.state === 'ready' && item.deliveries < consumer.maxDeliveries) {
          next = item;
          break;
        }
      }
      const waiter = next === undefined ? undefined : this.waiters.shift();
      if (next === undefined || waiter === undefined) return;
      next.deliveries += 1;
      next.generation += 1;
      next.state = 'delivered';
      next.holder = waiter.owner;
      this.armAckDeadline(next, consumer.ackWaitMs);
      waiter.resolve(this.delivery(next, next.generation, consumer.ackWaitMs));
    }
  }

  private armAckDeadline(item: StoredItem, ackWaitMs: number): void {
    clearTimeout(item.timer);
    item.timer = setTimeout(() => {
      item.timer = undefined;
      item.state = 'ready';
      item.holder = undefined;
      this.dispatch();
    }, ackWaitMs);
    item.timer.unref();
  }

  private delivery(item: StoredItem, generation: number, ackWaitMs: number): WorkDelivery {
    const current = (): boolean =>
      item.generation === generation && item.state === 'delivered' && this.items.get(item.sequence) === item;
    const remove = (): void => {
      if (!current()) return;
      clearTimeout(item.timer);
      this.items.delete(item.sequence);
    };
    return {
      data: item.data.slice(),
      deliveryCount: item.deliveries,
      sequence: item.sequence,
      id: item.id,
      ack: remove,
      term: remove,
      working: () => {
        if (current()) this.armAckDeadline(item, ackWaitMs);
      },
      nak: (delayMs) => {
        if (!current()) return;
        clearTimeout(item.timer);
        item.holder = undefined;
        if (delayMs <= 0) {
          item.state = 'ready';
          this.dispatch();
          return;
        }
        item.state = 'delayed';
        item.timer = setTimeout(() => {
          item.timer = undefined;
          item.state = 'ready';
          this.dispatch();
        }, delayMs);
        item.timer.unref();
      },
    };
  }
}

/** Kept dead letters of one queue, plus the live feed for watchers. */
export class MemoryDeadLetterStore {
  private nextSequence = 1;
  private readonly letters = new Map<number, Uint8Array>();

  constructor(
    readonly subject: string,
    private readonly broker: MemoryBroker,
  ) {}

  append(data: Uint8Array): void {
    const sequence = this.nextSequence++;
    this.letters.set(sequence, data.slice());
    this.broker.publish(this.subject, encodeNotice(sequence, data));
  }

  list(fromSequence: number, limit: number): StoredDeadLetter[] {
    const found: StoredDeadLetter[] = [];
    for (const [sequence, data] of this.letters) {
      if (found.length >= limit) break;
      if (sequence >= fromSequence) found.push({ sequence, data: data.slice() });
    }
    return found;
  }

  get(sequence: number): Uint8Array | null {
    return this.letters.get(sequence)?.slice() ?? null;
  }

  count(): number {
    return this.letters.size;
  }

  remove(sequence: number): boolean {
    return this.letters.delete(sequence);
  }
}

/** Live dead-letter notices carry the sequence in front of the record: 8 bytes, big-endian. */
function encodeNotice(sequence: number, data: Uint8Array): Uint8Array {
  const notice = new Uint8Array(8 + data.byteLength);
  new DataView(notice.buffer).setBigUint64(0, BigInt(sequence));
  notice.set(data, 8);
  return notice;
}

export function decodeNotice(notice: Uint8Array): StoredDeadLetter {
  const view = new DataView(notice.buffer, notice.byteOffset, notice.byteLength);
  return { sequence: Number(view.getBigUint64(0)), data: notice.subarray(8) };
}
