import { setTimeout as sleep } from 'node:timers/promises';
import { defineWorkQueue } from '@haven/contracts';
import { JsonCodec } from './json.codec';
import { RecordingLogger } from './testing/bus-contract.suite';
import { WorkRunner, type DeadLetterRecord, type WorkDelivery } from './work.runner';
import type { WorkItem } from './bus.interface';

/** A delivery that records what the runner told the server. */
class RecordedDelivery implements WorkDelivery {
  readonly calls: string[] = [];
  readonly data: Uint8Array;
  readonly sequence = 7;
  readonly id = 'item-7';
  constructor(
    payload: unknown,
    readonly deliveryCount: number,
  ) {
    this.data = new TextEncoder().encode(JSON.stringify(payload));
  }
  ack(): void {
    this.calls.push('ack');
  }
  nak(delayMs: number): void {
    this.calls.push(`nak ${delayMs}`);
  }
  working(): void {
    this.calls.push('working');
  }
  term(): void {
    this.calls.push('term');
  }
}

describe('WorkRunner', () => {
  const queue = defineWorkQueue<{ vm: string }>('runner-spec', {
    maxDeliver: 3,
    ackWaitMs: 1_000,
    retryDelaysMs: [100, 200],
  });
  let letters: DeadLetterRecord[];
  let logger: RecordingLogger;
  const runner = (
    handler: (item: WorkItem<{ vm: string }>) => Promise<void>,
    deadLetter: (record: DeadLetterRecord) => Promise<void> = (record) => {
      letters.push(record);
      return Promise.resolve();
    },
  ) =>
    new WorkRunner(queue, 'haven.work.runner-spec', handler, new JsonCodec(1024 * 1024), deadLetter, logger);

  beforeEach(() => {
    letters = [];
    logger = new RecordingLogger();
  });

  it('acks an item whose handler resolves, handing it the payload and attempt', async () => {
    const seen: WorkItem<{ vm: string }>[] = [];
    const delivery = new RecordedDelivery({ vm: 'vm-1' }, 2);
    await runner((item) => {
      seen.push(item);
      return Promise.resolve();
    }).handle(delivery);
    expect(delivery.calls).toEqual(['ack']);
    expect(seen[0]).toMatchObject({ payload: { vm: 'vm-1' }, attempt: 2, maxDeliver: 3, id: 'item-7' });
  });

  it('naks a failed attempt with the retry delay of that attempt', async () => {
    const first = new RecordedDelivery({ vm: 'vm-1' }, 1);
    const second = new RecordedDelivery({ vm: 'vm-1' }, 2);
    const failing = runner(() => Promise.reject(new Error('busy')));
    await failing.handle(first);
    await failing.handle(second);
    expect(first.calls).toEqual(['nak 100']);
    expect(second.calls).toEqual(['nak 200']);
    expect(letters).toEqual([]);
  });

  it('dead-letters the last failed attempt with the error, then terminates it', async () => {
    const delivery = new RecordedDelivery({ vm: 'vm-1' }, 3);
    await runner(() => Promise.reject(Object.assign(new Error('SR full'), { code: 'SR_FULL' }))).handle(
      delivery,
    );
    expect(delivery.calls).toEqual(['term']);
    expect(letters).toEqual([
      expect.objectContaining({
        queue: 'runner-spec',
        id: 'item-7',
        payload: { vm: 'vm-1' },
        attempts: 3,
        error: { code: 'SR_FULL', message: 'SR full' },
      }),
    ]);
  });

  it('dead-letters without running an item delivered past maxDeliver (its last attempt died)', async () => {
    let ran = false;
    const delivery = new RecordedDelivery({ vm: 'vm-1' }, 4);
    await runner(() => {
      ran = true;
      return Promise.resolve();
    }).handle(delivery);
    expect(ran).toBe(false);
    expect(delivery.calls).toEqual(['term']);
    expect(letters[0]).toMatchObject({ attempts: 3, error: { code: 'BUS_ACK_WAIT_EXPIRED' } });
  });

  it('keeps the item queued when the dead letter cannot be stored', async () => {
    const delivery = new RecordedDelivery({ vm: 'vm-1' }, 3);
    await runner(
      () => Promise.reject(new Error('broken')),
      () => Promise.reject(new Error('dead-letter stream unavailable')),
    ).handle(delivery);
    expect(delivery.calls).toEqual(['nak 200']);
    expect(logger.lines.some((line) => line.message.includes('could not store dead letter'))).toBe(true);
  });

  it('forwards a flood of working() calls at most every ackWait/10, with a trailing one', async () => {
    const delivery = new RecordedDelivery({ vm: 'vm-1' }, 1);
    await runner(async (item) => {
      for (let i = 0; i < 500; i++) item.working();
      await sleep(250);
    }).handle(delivery);
    expect(delivery.calls).toEqual(['working', 'working', 'ack']);
  });

  it('hands an item back at once when its handler stops because of a shutdown', async () => {
    const delivery = new RecordedDelivery({ vm: 'vm-1' }, 3);
    const shuttingDown = runner(
      (item) =>
        new Promise((_, reject) => {
          item.signal.addEventListener('abort', () => reject(new Error('stopped')));
        }),
    );
    const running = shuttingDown.handle(delivery);
    shuttingDown.abortAll('closing', true);
    await running;
    expect(delivery.calls).toEqual(['nak 0']);
    expect(letters).toEqual([]);
  });

  it('sends nothing once abandoned (the process is considered dead)', async () => {
    const delivery = new RecordedDelivery({ vm: 'vm-1' }, 3);
    const dying = runner(
      (item) =>
        new Promise((_, reject) => {
          item.signal.addEventListener('abort', () => reject(new Error('killed')));
        }),
    );
    const running = dying.handle(delivery);
    dying.abandon();
    await running;
    expect(delivery.calls).toEqual([]);
    expect(letters).toEqual([]);
  });

  it('dead-letters an undecodable item at once, keeping its first bytes', async () => {
    const delivery = new RecordedDelivery(undefined, 1);
    (delivery as { data: Uint8Array }).data = new TextEncoder().encode('not json');
    await runner(() => Promise.resolve()).handle(delivery);
    expect(delivery.calls).toEqual(['term']);
    expect(letters[0]).toMatchObject({ payload: null, error: { code: 'BUS_PAYLOAD_UNDECODABLE' } });
    expect(letters[0]?.error.message).toContain('not json');
  });

  it('tells the observer when items start and how they end', async () => {
    const events: string[] = [];
    const observed = new WorkRunner(
      queue,
      'haven.work.runner-spec',
      (item) => (item.attempt === 1 ? Promise.resolve() : Promise.reject(new Error('no'))),
      new JsonCodec(1024 * 1024),
      () => Promise.resolve(),
      logger,
      {
        workStarted: (name) => events.push(`start ${name}`),
        workSettled: (name, outcome, durationMs) => events.push(`${outcome} ${name} ${durationMs >= 0}`),
      },
    );
    await observed.handle(new RecordedDelivery({ vm: 'a' }, 1));
    await observed.handle(new RecordedDelivery({ vm: 'b' }, 2));
    await observed.handle(new RecordedDelivery({ vm: 'c' }, 3));
    expect(events).toEqual([
      'start runner-spec',
      'acked runner-spec true',
      'start runner-spec',
      'retried runner-spec true',
      'start runner-spec',
      'dead-lettered runner-spec true',
    ]);
  });
});
