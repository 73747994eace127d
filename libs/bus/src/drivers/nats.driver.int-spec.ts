import { connect } from 'nats';
import { describeIntegration, testNatsUrl, uniqueName } from '@haven/testing';
import { runBusContractSuite } from '../testing/bus-contract.suite';
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
