import { connect } from 'nats';
import { defineRequest, defineWorkQueue } from '@haven/contracts';
import { describeIntegration, NatsTestServer, testNatsUrl, uniqueName } from '@haven/testing';
import { eventually, RecordingLogger, runBusContractSuite } from '../testing/bus-contract.suite';
import { BusError } from '../bus.errors';
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
  runBusContractSuite('NATS driver', {
    makeBus: (name, logger) =>
      createBus({ driver: 'nats', url: testNatsUrl(), name, prefix, logger, drainTimeoutMs: 5_000 }),
    cleanup: deleteStreams,
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
      worker.respond(ping, () => Promise.resolve('pong'));
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
});
