export * from './bus.interface';
export * from './bus.errors';
export { createBus } from './bus.factory';
export {
  BaseBus,
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_CONSUMER_NAME,
} from './bus.base';
export { BusNamespace } from './subject.namespace';
export { MemoryBroker } from './drivers/memory.broker';
export { MemoryBus } from './drivers/memory.driver';
export { NatsBus } from './drivers/nats.driver';
