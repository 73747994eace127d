import { defineRequest } from '@haven/contracts';
import { runBusContractSuite } from '../testing/bus-contract.suite';
import { BusNoRespondersError } from '../bus.errors';
import { createBus } from '../bus.factory';
import { MemoryBroker } from './memory.broker';

const broker = new MemoryBroker();

runBusContractSuite('in-process driver', {
  makeBus: (name, logger) => createBus({ driver: 'memory', name, broker, logger, drainTimeoutMs: 5_000 }),
});

describe('in-process broker scope', () => {
  const ping = defineRequest<null, string>('haven.v1.scope.ping');

  it('gives each bus its own broker unless one is passed', async () => {
    const a = await createBus({ driver: 'memory', name: 'app-1' });
    const b = await createBus({ driver: 'memory', name: 'app-2' });
    try {
      a.respond(ping, () => Promise.resolve('from app-1'));
      await expect(a.request(ping, null)).resolves.toBe('from app-1');
      await expect(b.request(ping, null)).rejects.toBeInstanceOf(BusNoRespondersError);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('connects buses that share a broker', async () => {
    const shared = MemoryBroker.shared();
    const a = await createBus({ driver: 'memory', name: 'module-a', broker: shared });
    const b = await createBus({ driver: 'memory', name: 'module-b', broker: shared });
    try {
      a.respond(ping, () => Promise.resolve('from module-a'));
      await expect(b.request(ping, null)).resolves.toBe('from module-a');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
