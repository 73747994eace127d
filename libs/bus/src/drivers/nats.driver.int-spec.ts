import { AckPolicy, connect, nanos, RetentionPolicy } from 'nats';
import { defineRequest, defineWorkQueue } from '@haven/contracts';
import { describeIntegration, NatsTestServer, testNatsUrl, uniqueName } from '@haven/testing';
import { eventually, RecordingLogger, runBusContractSuite } from '../testing/bus-contract.suite';
import { BusConnectionError, BusError } from '../bus.errors';
import type { NatsBus } from './nats.driver';
import { createBus } from '../bus.factory';
import { BusNamespace } from '../subject.namespace';

// One prefix per run: subjects and streams of this run are invisible to every other run.
const prefix = uniqueName('bustest');

/** Deletes every stream this run created on the shared server. */
async function deleteStreams(): Promise<void> {
  const nc = await connect({ servers: testNatsUrl() });
  try {
    const jsm = await nc.jetstreamManager();
    const mine = new BusNamespace(prefix).streamNamePrefix;
    for await (const stream of jsm.streams.list()) {
      if (stream.config.name.startsWith(mine)) await jsm.streams.delete(stream.config.name);
    }
  } finally {
    await nc.close();
  }
}

describeIntegration('NATS bus driver', ['nats'], () => {
  // After every suite of this file, the contract's and the specifics'.
  afterAll(deleteStreams);

  runBusContractSuite('NATS driver', {
    makeBus: (name, logger) =>
      createBus({ driver: 'nats', url: testNatsUrl(), name, prefix, logger, drainTimeoutMs: 5_000 }),
  });

  describe('NATS specifics', () => {
    const logger = new RecordingLogger();
    const buses: NatsBus[] = [];
    const bus = async (): Promise<NatsBus> => {
      const created = await createBus({
        driver: 'nats',
        url: testNatsUrl(),
        name: uniqueName('nats'),
        prefix,
        logger,
      });
      buses.push(created);
      return created;
    };

    afterEach(async () => {
      await Promise.all(buses.splice(0).map((created) => created.close()));
    });

    it('names the URL when no server answers there', async () => {
      const error = await createBus({
        driver: 'nats',
        url: 'nats://127.0.0.1:1',
        name: 'nowhere',
        connectTimeoutMs: 1_000,
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BusConnectionError);
      expect((error as Error).message).toContain('nats://127.0.0.1:1');
    });

    it('never puts credentials of the URL in an error', async () => {
      const error = await createBus({
        driver: 'nats',
        url: 'nats://admin:s3cret@127.0.0.1:1',
        name: 'nowhere',
        connectTimeoutMs: 1_000,
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BusConnectionError);
      expect((error as Error).message).toContain('nats://***@127.0.0.1:1');
      expect((error as Error).message).not.toContain('s3cret');
    });

    it('keeps a work queue in a JetStream work-queue stream with a durable consumer set from the queue', async () => {
      const a = await bus();
      const tasks = defineWorkQueue<string>(uniqueName('q'), { ackWaitMs: 1_500, maxDeliver: 4 });
      await a.consume(tasks, () => Promise.resolve());
      const jsm = await a.connection.jetstreamManager();
      const namespace = new BusNamespace(prefix);
      const stream = await jsm.streams.info(namespace.workStream(tasks));
      expect(stream.config).toMatchObject({
        retention: RetentionPolicy.Workqueue,
        subjects: [`${prefix}.haven.work.${tasks.name}`],
      });
      const consumer = await jsm.consumers.info(namespace.workStream(tasks), 'workers');
      expect(consumer.config).toMatchObject({
        ack_policy: AckPolicy.Explicit,
        ack_wait: nanos(1_500),
        max_deliver: 5,
      });
      const dead = await jsm.streams.info(namespace.deadLetterStream(tasks));
      expect(dead.config.subjects).toEqual([`${prefix}.haven.dlq.${tasks.name}`]);

      // A new release with a longer ack wait updates the consumer in place.
      const b = await bus();
      const longer = defineWorkQueue<string>(tasks.name, { ackWaitMs: 3_000, maxDeliver: 4 });
      await b.consume(longer, () => Promise.resolve());
      const updated = await jsm.consumers.info(namespace.workStream(tasks), 'workers');
      expect(updated.config.ack_wait).toBe(nanos(3_000));
    });

    it('sets its streams up again when they are deleted under it', async () => {
      const a = await bus();
      const tasks = defineWorkQueue<number>(uniqueName('q'), { ackWaitMs: 2_000 });
      const done: number[] = [];
      await a.consume(tasks, (item) => {
        done.push(item.payload);
        return Promise.resolve();
      });
      await a.enqueue(tasks, 1);
      await eventually('item 1 consumed', () => done.includes(1));
      const jsm = await a.connection.jetstreamManager();
      await jsm.streams.delete(new BusNamespace(prefix).workStream(tasks));
      await a.enqueue(tasks, 2);
      await eventually('item 2 consumed from the re-created stream', () => done.includes(2));
      expect(done).toEqual([1, 2]);
    });

    it('dead-letters an item that is not JSON at once, keeping its first bytes', async () => {
      const a = await bus();
      const tasks = defineWorkQueue<string>(uniqueName('q'), { maxDeliver: 5 });
      const ran: string[] = [];
      await a.consume(tasks, (item) => {
        ran.push(item.payload);
        return Promise.resolve();
      });
      await a.connection
        .jetstream()
        .publish(new BusNamespace(prefix).workSubject(tasks), new TextEncoder().encode('<xml/>'));
      const box = a.deadLetters(tasks);
      await eventually('the garbage is dead-lettered', async () => (await box.count()) === 1);
      const [letter] = await box.list();
      expect(letter).toMatchObject({
        payload: null,
        attempts: 1,
        error: { code: 'BUS_PAYLOAD_UNDECODABLE' },
      });
      expect(letter.error.message).toContain('<xml/>');
      expect(ran).toEqual([]);
    });
  });
});

describeIntegration('NATS bus driver across a server restart', ['nats-server'], () => {
  let server: NatsTestServer;

  beforeAll(async () => {
    server = await NatsTestServer.start();
  });

  afterAll(async () => {
    await server.dispose();
  });

  it('reports the outage, reconnects, and resumes requests and work', async () => {
    const logger = new RecordingLogger();
    const settings = {
      driver: 'nats',
      url: server.url,
      logger,
      drainTimeoutMs: 5_000,
      pullExpiresMs: 1_000,
    } as const;
    const worker = await createBus({ ...settings, name: 'worker' });
    const client = await createBus({ ...settings, name: 'client' });
    try {
      const ping = defineRequest<null, string>('haven.v1.restart.ping');
      const tasks = defineWorkQueue<number>('restart-tasks', { ackWaitMs: 2_000, retryDelaysMs: [50] });
      await worker.respond(ping, () => Promise.resolve('pong')).ready();
      const done: number[] = [];
      await worker.consume(tasks, (item) => {
        done.push(item.payload);
        return Promise.resolve();
      });
      await expect(client.request(ping, null)).resolves.toBe('pong');
      await client.enqueue(tasks, 1);
      await eventually('item 1 consumed before the outage', () => done.includes(1));

      await server.stop();
      await eventually('health reports the lost server', async () => !(await worker.health()).ok);
      expect((await worker.health()).detail).toContain('reconnecting');
      await expect(client.request(ping, null, { timeoutMs: 500 })).rejects.toBeInstanceOf(BusError);

      await server.restart();
      await eventually(
        'both buses healthy again',
        async () => (await worker.health()).ok && (await client.health()).ok,
        20_000,
      );
      await eventually(
        'requests answered again',
        async () => (await client.request(ping, null, { timeoutMs: 1_000 }).catch(() => null)) === 'pong',
        20_000,
      );
      await client.enqueue(tasks, 2);
      await eventually('work consumed after the restart', () => done.includes(2), 20_000);
      expect(done).toEqual([1, 2]);
      expect(logger.lines.some((line) => line.message.includes('reconnected'))).toBe(true);
    } finally {
      await Promise.all([worker.close(), client.close()]);
    }
  });

  it('closes cleanly while the server is away', async () => {
    const bus = await createBus({
      driver: 'nats',
      url: server.url,
      name: 'orphan',
      logger: new RecordingLogger(),
    });
    const tasks = defineWorkQueue<number>('orphan-tasks', { ackWaitMs: 2_000 });
    await bus.consume(tasks, () => Promise.resolve());
    await bus.respond(defineRequest<null, null>('haven.v1.orphan.ping'), () => Promise.resolve(null)).ready();
    await server.stop();
    try {
      await eventually('the bus noticed', async () => !(await bus.health()).ok);
      await bus.close();
      await expect(bus.health()).resolves.toMatchObject({ ok: false });
      expect(bus.connection.isClosed()).toBe(true);
    } finally {
      await server.restart();
    }
  });
});
