import { setTimeout as sleep } from 'node:timers/promises';
import { defineEvent, defineRequest, defineWorkQueue, type WorkQueueOptions } from '@haven/contracts';
import { uniqueName } from '@haven/testing';
import type { BaseBus } from '../bus.base';
import {
  BusClosedError,
  BusConfigurationError,
  BusNoRespondersError,
  BusPayloadTooLargeError,
  BusRemoteError,
  BusTimeoutError,
} from '../bus.errors';
import type { BusLogger, DeadLetter, WorkItem } from '../bus.interface';

export interface BusContractHarness {
  /** A new client on the same server (or broker) as every other bus of this suite. */
  makeBus(name: string, logger: BusLogger): Promise<BaseBus>;
  /** After the suite: remove what it left on the server. */
  cleanup?(): Promise<void>;
}

/** Collects log lines instead of printing them, so tests can read them. */
export class RecordingLogger implements BusLogger {
  readonly lines: { level: string; message: string; context?: Record<string, unknown> }[] = [];
  warn(message: string, context?: Record<string, unknown>): void {
    this.lines.push({ level: 'warn', message, context });
  }
  error(message: string, context?: Record<string, unknown>): void {
    this.lines.push({ level: 'error', message, context });
  }
}

/** Polls until `check` holds; fails naming what never happened. */
export async function eventually(
  what: string,
  check: () => boolean | Promise<boolean>,
  withinMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`within ${withinMs} ms, expected: ${what}`);
    await sleep(20);
  }
}

/** A promise with its resolver, to hold a handler until the test lets it go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = (): void => reject(new Error('aborted: consumer shutting down'));
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}

class CodedError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The behaviour every bus driver must show, run against each driver. Short ack waits keep it
 * quick; bounds are only "happens within" / "does not happen within", never speed.
 */
export function runBusContractSuite(label: string, harness: BusContractHarness): void {
  describe(`bus contract: ${label}`, () => {
    const open: BaseBus[] = [];
    const releases: (() => void)[] = [];
    let logger: RecordingLogger;

    const bus = async (name = 'client'): Promise<BaseBus> => {
      const created = await harness.makeBus(uniqueName(name), logger);
      open.push(created);
      return created;
    };
    const hold = (): Promise<void> => {
      const held = gate();
      releases.push(held.open);
      return held.promise;
    };
    const queue = <T>(options: WorkQueueOptions) => defineWorkQueue<T>(uniqueName('q'), options);
    const requestSubject = <Req, Res>() => defineRequest<Req, Res>(`haven.v1.${uniqueName('req')}`);
    const eventSubject = <E>() => defineEvent<E>(`haven.v1.${uniqueName('evt')}`);

    beforeEach(() => {
      logger = new RecordingLogger();
    });

    afterEach(async () => {
      for (const release of releases.splice(0)) release();
      await Promise.all(open.splice(0).map((created) => created.close()));
    });

    afterAll(async () => {
      await harness.cleanup?.();
    });

    describe('request / reply', () => {
      it('answers a request with the handler result, as JSON', async () => {
        const a = await bus('responder');
        const b = await bus('requester');
        const echo = requestSubject<{ vm: string; at: Date }, { vm: string; at: string; by: string }>();
        await a
          .respond(echo, (payload) =>
            Promise.resolve({ vm: payload.vm, at: payload.at as unknown as string, by: a.name }),
          )
          .ready();
        const at = new Date('2026-01-02T03:04:05.000Z');
        await expect(b.request(echo, { vm: 'vm-1', at })).resolves.toEqual({
          vm: 'vm-1',
          at: '2026-01-02T03:04:05.000Z',
          by: a.name,
        });
      });

      it('fails with BusTimeoutError naming the subject when the responder does not answer in time', async () => {
        const a = await bus();
        const slow = requestSubject<null, string>();
        a.respond(slow, async () => {
          await hold();
          return 'late';
        });
        const error = await a.request(slow, null, { timeoutMs: 300 }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(BusTimeoutError);
        expect((error as BusTimeoutError).code).toBe('BUS_TIMEOUT');
        expect((error as Error).message).toContain(slow.name);
        expect((error as Error).message).toContain('300 ms');
      });

      it('fails with BusNoRespondersError, not a timeout, when nobody responds', async () => {
        const a = await bus();
        const nobody = requestSubject<null, null>();
        const error = await a.request(nobody, null, { timeoutMs: 30_000 }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(BusNoRespondersError);
        expect((error as BusNoRespondersError).code).toBe('BUS_NO_RESPONDERS');
        expect((error as Error).message).toContain(nobody.name);
      });

      it("carries a handler's error code and message back to the requester", async () => {
        const a = await bus();
        const b = await bus();
        const lookup = requestSubject<{ poolId: string }, never>();
        await a
          .respond(lookup, (payload) =>
            Promise.reject(new CodedError('POOL_NOT_FOUND', `pool ${payload.poolId} does not exist`)),
          )
          .ready();
        const error = await b.request(lookup, { poolId: 'p-42' }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(BusRemoteError);
        expect(error).toMatchObject({
          code: 'BUS_REMOTE_ERROR',
          remoteCode: 'POOL_NOT_FOUND',
          remoteMessage: 'pool p-42 does not exist',
        });
      });

      it('has each request handled once by responders sharing the default queue group', async () => {
        const handled: string[] = [];
        const count = requestSubject<number, string>();
        const responders = [await bus('r1'), await bus('r2'), await bus('r3')];
        for (const responder of responders) {
          await responder
            .respond(count, (n) => {
              handled.push(`${n}`);
              return Promise.resolve(responder.name);
            })
            .ready();
        }
        const requester = await bus();
        const answers = await Promise.all(Array.from({ length: 30 }, (_, n) => requester.request(count, n)));
        expect(answers).toHaveLength(30);
        expect(handled.sort()).toEqual(Array.from({ length: 30 }, (_, n) => `${n}`).sort());
      });

      it('stops answering after unsubscribe', async () => {
        const a = await bus();
        const ping = requestSubject<null, string>();
        const subscription = a.respond(ping, () => Promise.resolve('pong'));
        await expect(a.request(ping, null)).resolves.toBe('pong');
        await subscription.unsubscribe();
        await expect(a.request(ping, null)).rejects.toBeInstanceOf(BusNoRespondersError);
      });
    });

    describe('events', () => {
      it('delivers each event to every subscriber, and to one member of each queue group', async () => {
        const progress = eventSubject<{ n: number }>();
        const plain = [await bus('p1'), await bus('p2')];
        const grouped = [await bus('g1'), await bus('g2'), await bus('g3')];
        const plainSeen = plain.map(() => [] as number[]);
        const groupSeen: number[] = [];
        const subscriptions = [
          ...plain.map((b, i) => b.subscribe(progress, (e) => void plainSeen[i]?.push(e.n))),
          ...grouped.map((b) => b.subscribe(progress, (e) => void groupSeen.push(e.n), { queue: 'ui' })),
        ];
        const publisher = await bus();
        // Core subscriptions are asynchronous on a server: make sure they are registered.
        await Promise.all(subscriptions.map((subscription) => subscription.ready()));
        const all = Array.from({ length: 40 }, (_, n) => n);
        for (const n of all) await publisher.publish(progress, { n });
        await eventually(
          'every subscriber saw 40 events and the group 40 in total',
          () => plainSeen.every((seen) => seen.length >= 40) && groupSeen.length >= 40,
        );
        await sleep(300);
        for (const seen of plainSeen) expect(seen).toEqual(all);
        expect([...groupSeen].sort((x, y) => x - y)).toEqual(all);
      });

      it('keeps a failing event handler from affecting the others and logs it', async () => {
        const a = await bus();
        const b = await bus();
        const topic = eventSubject<string>();
        const seen: string[] = [];
        const failing = a.subscribe(topic, () => {
          throw new Error('handler broke');
        });
        const healthy = b.subscribe(topic, (e) => void seen.push(e));
        await Promise.all([failing.ready(), healthy.ready()]);
        await a.publish(topic, 'one');
        await a.publish(topic, 'two');
        await eventually('the healthy subscriber got both events', () => seen.length === 2);
        await eventually('the failure was logged', () =>
          logger.lines.some(
            (line) => line.level === 'error' && JSON.stringify(line.context).includes('handler broke'),
          ),
        );
      });
    });

    describe('work queues', () => {
      it('delivers each item to exactly one of two consumers', async () => {
        const tasks = queue<{ n: number }>({ ackWaitMs: 5_000 });
        const handledBy = new Map<number, string[]>();
        const workers = [await bus('w1'), await bus('w2')];
        for (const worker of workers) {
          await worker.consume(
            tasks,
            async (item) => {
              handledBy.set(item.payload.n, [...(handledBy.get(item.payload.n) ?? []), worker.name]);
              await sleep(5);
            },
            { concurrency: 2 },
          );
        }
        const producer = await bus();
        for (let n = 0; n < 20; n++) await producer.enqueue(tasks, { n });
        await eventually('all 20 items handled', () => handledBy.size === 20);
        await sleep(500);
        expect([...handledBy.values()].every((by) => by.length === 1)).toBe(true);
        expect(new Set([...handledBy.values()].flat()).size).toBeGreaterThanOrEqual(1);
      });

      it('keeps items enqueued before any consumer exists', async () => {
        const tasks = queue<string>({});
        const producer = await bus();
        await producer.enqueue(tasks, 'early');
        const seen: WorkItem<string>[] = [];
        const worker = await bus();
        await worker.consume(tasks, (item) => {
          seen.push(item);
          return Promise.resolve();
        });
        await eventually('the early item is delivered', () => seen.length === 1);
        expect(seen[0]).toMatchObject({ payload: 'early', attempt: 1, maxDeliver: tasks.maxDeliver });
      });

      it('runs up to `concurrency` items at once on one consumer', async () => {
        const tasks = queue<number>({ ackWaitMs: 10_000 });
        const worker = await bus();
        let running = 0;
        let peak = 0;
        const release = hold();
        await worker.consume(
          tasks,
          async () => {
            running++;
            peak = Math.max(peak, running);
            await release;
            running--;
          },
          { concurrency: 3 },
        );
        for (let n = 0; n < 5; n++) await worker.enqueue(tasks, n);
        await eventually('three items run at the same time', () => running === 3);
        await sleep(200);
        expect(peak).toBe(3);
      });

      it('redelivers an item to another consumer after its consumer dies without acking', async () => {
        const tasks = queue<string>({ ackWaitMs: 1_000, maxDeliver: 3, retryDelaysMs: [50] });
        const doomed = await bus('doomed');
        const deliveries: { by: string; attempt: number; id: string }[] = [];
        let doomedSignal: AbortSignal | undefined;
        await doomed.consume(tasks, async (item) => {
          deliveries.push({ by: 'doomed', attempt: item.attempt, id: item.id });
          doomedSignal = item.signal;
          await untilAborted(item.signal);
        });
        const producer = await bus();
        const { id } = await producer.enqueue(tasks, 'survive me');
        await eventually('the doomed consumer took the item', () => deliveries.length === 1);
        const survivor = await bus('survivor');
        await survivor.consume(tasks, (item) => {
          deliveries.push({ by: 'survivor', attempt: item.attempt, id: item.id });
          return Promise.resolve();
        });
        await doomed.kill();
        expect(doomedSignal?.aborted).toBe(true);
        await eventually('the survivor got the item after the ack wait', () => deliveries.length === 2);
        await sleep(1_500);
        expect(deliveries).toEqual([
          { by: 'doomed', attempt: 1, id },
          { by: 'survivor', attempt: 2, id },
        ]);
      });

      it('does not redeliver past the ack wait while the handler reports progress with working()', async () => {
        const tasks = queue<string>({ ackWaitMs: 1_000, maxDeliver: 3, retryDelaysMs: [50] });
        const worker = await bus('long-runner');
        const attempts: number[] = [];
        let finished = false;
        await worker.consume(tasks, async (item) => {
          attempts.push(item.attempt);
          // Three ack waits of work, reporting progress every 200 ms.
          for (let step = 0; step < 15; step++) {
            await sleep(200);
            item.working();
          }
          finished = true;
        });
        await worker.enqueue(tasks, 'long transfer');
        await eventually('the long item started', () => attempts.length === 1);
        const other = await bus('idle');
        await other.consume(tasks, (item) => {
          attempts.push(item.attempt);
          return Promise.resolve();
        });
        await eventually('the long item finished', () => finished, 20_000);
        await sleep(1_500);
        expect(attempts).toEqual([1]);
      });

      it('redelivers an item whose handler neither acks nor fails (hung) after the ack wait', async () => {
        const tasks = queue<string>({ ackWaitMs: 1_000, maxDeliver: 3, retryDelaysMs: [50] });
        const worker = await bus();
        const attempts: number[] = [];
        await worker.consume(
          tasks,
          async (item) => {
            attempts.push(item.attempt);
            if (item.attempt === 1) await hold();
          },
          { concurrency: 2 },
        );
        await worker.enqueue(tasks, 'hangs once');
        await eventually('the item came back as attempt 2', () => attempts.includes(2));
        expect(attempts).toEqual([1, 2]);
      });

      it('retries a failing item and dead-letters it after the last attempt, with the error and attempts', async () => {
        const tasks = queue<{ vm: string }>({ ackWaitMs: 5_000, maxDeliver: 3, retryDelaysMs: [50, 100] });
        const worker = await bus();
        const attempts: number[] = [];
        const watched: DeadLetter<{ vm: string }>[] = [];
        const box = worker.deadLetters(tasks);
        await box.watch((letter) => void watched.push(letter));
        let fixed = false;
        await worker.consume(tasks, (item) => {
          attempts.push(item.attempt);
          if (fixed) return Promise.resolve();
          return Promise.reject(
            new CodedError('DISK_GONE', `VDI of ${item.payload.vm} vanished on attempt ${item.attempt}`),
          );
        });
        const { id } = await worker.enqueue(tasks, { vm: 'vm-7' });
        await eventually('the dead letter is announced', () => watched.length === 1);
        expect(attempts).toEqual([1, 2, 3]);
        expect(watched[0]).toMatchObject({
          queue: tasks.name,
          id,
          payload: { vm: 'vm-7' },
          attempts: 3,
          error: { code: 'DISK_GONE', message: 'VDI of vm-7 vanished on attempt 3' },
        });
        const stored = await box.list();
        expect(stored).toHaveLength(1);
        expect(stored[0]).toEqual(watched[0]);
        expect(await box.count()).toBe(1);
        await sleep(300);
        expect(attempts).toEqual([1, 2, 3]);

        // An operator fixes the cause and requeues: a fresh item, attempt 1, and the letter is gone.
        fixed = true;
        const letter = stored[0] as DeadLetter<{ vm: string }>;
        await box.requeue(letter.sequence);
        await eventually('the requeued item ran', () => attempts.length === 4);
        expect(attempts[3]).toBe(1);
        expect(await box.count()).toBe(0);
        expect(await box.remove(letter.sequence)).toBe(false);
      });

      it('dead-letters an item whose last attempt died without an ack, without running it again', async () => {
        const tasks = queue<string>({ ackWaitMs: 1_000, maxDeliver: 1, retryDelaysMs: [50] });
        const doomed = await bus('doomed');
        const ran: string[] = [];
        await doomed.consume(tasks, async (item) => {
          ran.push('doomed');
          await untilAborted(item.signal);
        });
        await doomed.enqueue(tasks, 'last chance');
        await eventually('the only attempt started', () => ran.length === 1);
        const survivor = await bus('survivor');
        await survivor.consume(tasks, () => {
          ran.push('survivor');
          return Promise.resolve();
        });
        await doomed.kill();
        const box = survivor.deadLetters(tasks);
        let letters: DeadLetter<string>[] = [];
        await eventually('the item reached the dead letters', async () => {
          letters = await box.list();
          return letters.length === 1;
        });
        expect(ran).toEqual(['doomed']);
        expect(letters[0]).toMatchObject({
          payload: 'last chance',
          attempts: 1,
          error: { code: 'BUS_ACK_WAIT_EXPIRED' },
        });
        expect(letters[0]?.error.message).toContain('ack wait of 1000 ms');
      });

      it('stores an item once per dedupe id', async () => {
        const tasks = queue<string>({});
        const producer = await bus();
        const first = await producer.enqueue(tasks, 'backup vm-1 run 9', { id: 'run-9/vm-1' });
        const again = await producer.enqueue(tasks, 'backup vm-1 run 9', { id: 'run-9/vm-1' });
        const other = await producer.enqueue(tasks, 'backup vm-2 run 9', { id: 'run-9/vm-2' });
        expect(first).toEqual({ id: 'run-9/vm-1', duplicate: false });
        expect(again).toEqual({ id: 'run-9/vm-1', duplicate: true });
        expect(other.duplicate).toBe(false);
        const seen: { id: string; payload: string }[] = [];
        const worker = await bus();
        await worker.consume(tasks, (item) => {
          seen.push({ id: item.id, payload: item.payload });
          return Promise.resolve();
        });
        await eventually('both distinct items delivered', () => seen.length === 2);
        await sleep(300);
        expect(seen).toEqual([
          { id: 'run-9/vm-1', payload: 'backup vm-1 run 9' },
          { id: 'run-9/vm-2', payload: 'backup vm-2 run 9' },
        ]);
      });

      it('on close, aborts running handlers; an aborted item goes straight back to the queue', async () => {
        const tasks = queue<string>({ ackWaitMs: 60_000, maxDeliver: 2, retryDelaysMs: [60_000] });
        const leaving = await bus('leaving');
        const attempts: { by: string; attempt: number }[] = [];
        await leaving.consume(tasks, async (item) => {
          attempts.push({ by: 'leaving', attempt: item.attempt });
          await untilAborted(item.signal);
        });
        await leaving.enqueue(tasks, 'hand me back');
        await eventually('the item started', () => attempts.length === 1);
        await leaving.close();
        const staying = await bus('staying');
        await staying.consume(tasks, (item) => {
          attempts.push({ by: 'staying', attempt: item.attempt });
          return Promise.resolve();
        });
        // Well inside the 60 s ack wait and retry delay: only the hand-back explains it.
        await eventually('the item was handed back and picked up', () => attempts.length === 2, 10_000);
        expect(attempts).toEqual([
          { by: 'leaving', attempt: 1 },
          { by: 'staying', attempt: 2 },
        ]);
        expect(await staying.deadLetters(tasks).count()).toBe(0);
      });

      it('on close, lets a handler that ignores the abort finish and acks it', async () => {
        const tasks = queue<string>({ ackWaitMs: 60_000 });
        const leaving = await bus('leaving');
        const done: string[] = [];
        let started = false;
        await leaving.consume(tasks, async (item) => {
          started = true;
          await sleep(300);
          done.push(item.payload);
        });
        await leaving.enqueue(tasks, 'finish me');
        await eventually('the item started', () => started);
        await leaving.close();
        expect(done).toEqual(['finish me']);
        const next = await bus('next');
        const seen: string[] = [];
        await next.consume(tasks, (item) => {
          seen.push(item.payload);
          return Promise.resolve();
        });
        await sleep(1_000);
        expect(seen).toEqual([]);
      });
    });

    describe('misuse', () => {
      it('refuses a second consumer name on one work queue, saying why', async () => {
        const tasks = queue<string>({});
        const a = await bus();
        await a.consume(tasks, () => Promise.resolve(), { consumerName: 'workers' });
        const error = await a
          .consume(tasks, () => Promise.resolve(), { consumerName: 'rogue' })
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(BusConfigurationError);
        expect((error as Error).message).toContain('same consumerName');
      });

      it('refuses invalid consume options', async () => {
        const a = await bus();
        await expect(
          a.consume(queue<string>({}), () => Promise.resolve(), { concurrency: 0 }),
        ).rejects.toBeInstanceOf(BusConfigurationError);
        await expect(
          a.consume(queue<string>({}), () => Promise.resolve(), { consumerName: 'no.dots' }),
        ).rejects.toBeInstanceOf(BusConfigurationError);
      });
    });

    describe('limits and life cycle', () => {
      it('refuses a payload over the limit on every path, naming the subject and sizes', async () => {
        const a = await bus();
        const big = 'x'.repeat(1_100_000);
        const subject = requestSubject<string, string>();
        const topic = eventSubject<string>();
        const tasks = queue<string>({});
        for (const attempt of [
          () => a.request(subject, big),
          () => a.publish(topic, big),
          () => a.enqueue(tasks, big),
        ]) {
          const error = await attempt().catch((e: unknown) => e);
          expect(error).toBeInstanceOf(BusPayloadTooLargeError);
          const tooLarge = error as BusPayloadTooLargeError;
          expect(tooLarge.code).toBe('BUS_PAYLOAD_TOO_LARGE');
          expect(tooLarge.sizeBytes).toBeGreaterThan(tooLarge.limitBytes);
          expect(tooLarge.limitBytes).toBeLessThanOrEqual(1024 * 1024);
          expect(tooLarge.message).toMatch(/bus limit of \d+ bytes/);
        }
      });

      it('turns a reply over the limit into a remote error for the requester', async () => {
        const a = await bus();
        const huge = requestSubject<null, string>();
        await a.respond(huge, () => Promise.resolve('y'.repeat(1_100_000))).ready();
        const error = await a.request(huge, null).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(BusRemoteError);
        expect((error as BusRemoteError).remoteCode).toBe('BUS_PAYLOAD_TOO_LARGE');
      });

      it('on close, answers the requests it is already handling', async () => {
        const responder = await bus('responder');
        const requester = await bus('requester');
        const slow = requestSubject<string, string>();
        let started = false;
        await responder
          .respond(slow, async (name) => {
            started = true;
            await sleep(300);
            return `done ${name}`;
          })
          .ready();
        const reply = requester.request(slow, 'job-1', { timeoutMs: 10_000 });
        await eventually('the request is being handled', () => started);
        await responder.close();
        await expect(reply).resolves.toBe('done job-1');
      });

      it('reports health, and refuses work once closed', async () => {
        const a = await bus();
        await expect(a.health()).resolves.toMatchObject({ ok: true });
        await a.close();
        await expect(a.health()).resolves.toMatchObject({ ok: false });
        await expect(a.request(requestSubject<null, null>(), null)).rejects.toBeInstanceOf(BusClosedError);
        await expect(a.enqueue(queue<string>({}), 'late')).rejects.toBeInstanceOf(BusClosedError);
      });
    });
  });
}
