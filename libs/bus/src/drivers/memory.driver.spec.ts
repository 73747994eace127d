import { runBusContractSuite } from '../testing/bus-contract.suite';
import { createBus } from '../bus.factory';
import { MemoryBroker } from './memory.broker';

const broker = new MemoryBroker();

runBusContractSuite('in-process driver', {
  makeBus: (name, logger) => createBus({ driver: 'memory', name, broker, logger, drainTimeoutMs: 5_000 }),
});
