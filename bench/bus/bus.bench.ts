/**
 * Control-plane bus figures: request/reply round trip (Haven NATS driver and in-process driver),
 * JetStream enqueue-to-consume latency, and throughput, each as a ratio to a raw `nats` client
 * request/reply round trip measured in the same run on the same server.
 *
 *   node bin/run.js bench/bus/bus.bench.ts [--big] [--url nats://127.0.0.1:4222]
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { connect, type NatsConnection } from 'nats';
import { defineRequest, defineWorkQueue } from '@haven/contracts';
import { createBus, type Bus, type BusLogger, MemoryBroker } from '@haven/bus';

const args = process.argv.slice(2);
const big = args.includes('--big');
const urlIndex = args.indexOf('--url');
const url =
  (urlIndex >= 0 ? args[urlIndex + 1] : undefined) ?? process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222';
const ROUND_TRIPS = big ? 20_000 : 3_000;
const WORK_ITEMS = big ? 10_000 : 1_000;
const LATENCY_ITEMS = big ? 2_000 : 300;
const IN_FLIGHT = 32;
const WORK_CONCURRENCY = 16;
const prefix = `bench_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;

/** A task-sized DTO (~250 bytes of JSON), what the bus really carries. */
const dto = {
  taskId: '2f9c7a1e-8d2b-4c0e-9a51-3b7f0d6c2e94',
  runId: 'c0ffee00-1234-4abc-8def-0123456789ab',
  vmUuid: '7d0b6a2c-5e4f-4a3b-9c8d-1e2f3a4b5c6d',
  kind: 'backup-incremental',
  remoteId: 'r-17',
  attempt: 1,
  settings: { compression: 'zstd', concurrency: 2 },
};

const quiet: BusLogger = { warn: () => undefined, error: () => undefined };

interface Figures {
  p50: number;
  p99: number;
}

function percentiles(samples: number[]): Figures {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return { p50: at(0.5), p99: at(0.99) };
}

async function sequential(count: number, once: () => Promise<unknown>): Promise<Figures> {
  for (let i = 0; i < Math.min(200, count); i++) await once(); // warm-up
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await once();
    samples.push(performance.now() - start);
  }
  return percentiles(samples);
}

/** Messages per second with `inFlight` concurrent callers. */
async function throughput(count: number, inFlight: number, once: () => Promise<unknown>): Promise<number> {
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < count) {
        next++;
        await once();
      }
    }),
  );
  return count / ((performance.now() - start) / 1000);
}

async function rawBaseline(nc: NatsConnection): Promise<{ latency: Figures; rate: number }> {
  const subject = `${prefix}.raw.echo`;
  const sub = nc.subscribe(subject, { callback: (_err, msg) => msg.respond(msg.data) });
  await nc.flush();
  const data = new TextEncoder().encode(JSON.stringify(dto));
  const once = () => nc.request(subject, data, { timeout: 5_000 });
  const latency = await sequential(ROUND_TRIPS, once);
  const rate = await throughput(ROUND_TRIPS, IN_FLIGHT, once);
  sub.unsubscribe();
  return { latency, rate };
}

async function busRequestReply(responder: Bus, requester: Bus): Promise<{ latency: Figures; rate: number }> {
  const echo = defineRequest<typeof dto, typeof dto>('haven.v1.bench.echo');
  const subscription = responder.respond(echo, (payload) => Promise.resolve(payload));
  await subscription.ready();
  const once = () => requester.request(echo, dto);
  const latency = await sequential(ROUND_TRIPS, once);
  const rate = await throughput(ROUND_TRIPS, IN_FLIGHT, once);
  await subscription.unsubscribe();
  return { latency, rate };
}

/** One item at a time: time from enqueue() called to the handler running. */
async function enqueueToConsume(producer: Bus, consumer: Bus, name: string): Promise<Figures> {
  const queue = defineWorkQueue<{ sentAt: number } & typeof dto>(name, { ackWaitMs: 30_000 });
  let arrived: ((at: number) => void) | undefined;
  const subscription = await consumer.consume(queue, (item) => {
    arrived?.(performance.now() - item.payload.sentAt);
    return Promise.resolve();
  });
  const once = () =>
    new Promise<number>((resolve) => {
      arrived = resolve;
      void producer.enqueue(queue, { ...dto, sentAt: performance.now() });
    });
  const samples: number[] = [];
  for (let i = 0; i < 20; i++) await once();
  for (let i = 0; i < LATENCY_ITEMS; i++) samples.push(await once());
  await subscription.unsubscribe();
  return percentiles(samples);
}

/** Enqueue WORK_ITEMS (32 in flight) while consumers with WORK_CONCURRENCY slots drain them. */
async function workThroughput(producer: Bus, consumers: Bus[], name: string): Promise<number> {
  const queue = defineWorkQueue<typeof dto>(name, { ackWaitMs: 30_000 });
  let handled = 0;
  let done: (() => void) | undefined;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const subscriptions = await Promise.all(
    consumers.map((consumer) =>
      consumer.consume(
        queue,
        () => {
          if (++handled === WORK_ITEMS) done?.();
          return Promise.resolve();
        },
        { concurrency: WORK_CONCURRENCY },
      ),
    ),
  );
  const start = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < WORK_ITEMS) {
        next++;
        await producer.enqueue(queue, dto);
      }
    }),
  );
  await finished;
  const rate = WORK_ITEMS / ((performance.now() - start) / 1000);
  await Promise.all(subscriptions.map((subscription) => subscription.unsubscribe()));
  return rate;
}

async function deleteStreams(nc: NatsConnection): Promise<void> {
  const jsm = await nc.jetstreamManager();
  for await (const stream of jsm.streams.list()) {
    if (stream.config.name.startsWith(`${prefix}_`)) await jsm.streams.delete(stream.config.name);
  }
}

const ms = (value: number): string => `${value.toFixed(3)} ms`;
const ratio = (value: number, base: number): string => `${(value / base).toFixed(2)}x`;

async function main(): Promise<void> {
  const nc = await connect({ servers: url, name: 'bench-raw' });
  const natsSettings = { driver: 'nats', url, prefix, logger: quiet } as const;
  const natsA = await createBus({ ...natsSettings, name: 'bench-a' });
  const natsB = await createBus({ ...natsSettings, name: 'bench-b' });
  const broker = new MemoryBroker();
  const memA = await createBus({ driver: 'memory', name: 'bench-mem-a', broker, logger: quiet });
  const memB = await createBus({ driver: 'memory', name: 'bench-mem-b', broker, logger: quiet });
  try {
    console.log(
      `bus bench: ${url}, ${ROUND_TRIPS} round trips, ${WORK_ITEMS} work items${big ? ' (--big)' : ''}`,
    );
    const raw = await rawBaseline(nc);
    const natsRr = await busRequestReply(natsA, natsB);
    const memRr = await busRequestReply(memA, memB);
    const natsWorkLatency = await enqueueToConsume(natsB, natsA, 'bench-latency');
    const memWorkLatency = await enqueueToConsume(memB, memA, 'bench-latency');
    const natsWorkRate = await workThroughput(natsB, [natsA, natsB], 'bench-throughput');
    const memWorkRate = await workThroughput(memB, [memA, memB], 'bench-throughput');

    const rows: [string, string, string, string, string][] = [
      [
        'raw nats request/reply (baseline)',
        ms(raw.latency.p50),
        ms(raw.latency.p99),
        '1.00x',
        `${raw.rate.toFixed(0)}/s`,
      ],
      [
        'bus request/reply, NATS driver',
        ms(natsRr.latency.p50),
        ms(natsRr.latency.p99),
        ratio(natsRr.latency.p50, raw.latency.p50),
        `${natsRr.rate.toFixed(0)}/s (${ratio(natsRr.rate, raw.rate)})`,
      ],
      [
        'bus request/reply, in-process driver',
        ms(memRr.latency.p50),
        ms(memRr.latency.p99),
        ratio(memRr.latency.p50, raw.latency.p50),
        `${memRr.rate.toFixed(0)}/s (${ratio(memRr.rate, raw.rate)})`,
      ],
      [
        'work queue enqueue->consume, JetStream',
        ms(natsWorkLatency.p50),
        ms(natsWorkLatency.p99),
        ratio(natsWorkLatency.p50, raw.latency.p50),
        `${natsWorkRate.toFixed(0)}/s (${ratio(natsWorkRate, raw.rate)})`,
      ],
      [
        'work queue enqueue->consume, in-process',
        ms(memWorkLatency.p50),
        ms(memWorkLatency.p99),
        ratio(memWorkLatency.p50, raw.latency.p50),
        `${memWorkRate.toFixed(0)}/s (${ratio(memWorkRate, raw.rate)})`,
      ],
    ];
    const header: [string, string, string, string, string] = [
      'measure',
      'p50',
      'p99',
      'p50 vs raw',
      `throughput (${IN_FLIGHT} in flight; vs raw)`,
    ];
    const widths = header.map((cell, i) => Math.max(cell.length, ...rows.map((row) => row[i]?.length ?? 0)));
    for (const row of [header, ...rows]) {
      console.log(`| ${row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join(' | ')} |`);
    }
  } finally {
    await Promise.all([natsA.close(), natsB.close(), memA.close(), memB.close()]);
    await deleteStreams(nc);
    await nc.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
