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

describe('request observer', () => {
  it('reports each request with its outcome', async () => {
    const outcomes: string[] = [];
    const bus = await createBus({
      driver: 'memory',
      name: 'observed',
      observer: { requestFinished: (subject, outcome) => outcomes.push(`${subject} ${outcome}`) },
    });
    const ok = defineRequest<null, string>('haven.v1.observed.ok');
    const failing = defineRequest<null, string>('haven.v1.observed.failing');
    const silent = defineRequest<null, string>('haven.v1.observed.silent');
    const nobody = defineRequest<null, string>('haven.v1.observed.nobody');
    let release: () => void = () => undefined;
    try {
      bus.respond(ok, () => Promise.resolve('fine'));
      bus.respond(failing, () => Promise.reject(new Error('broken')));
      bus.respond(silent, () => new Promise((resolve) => (release = () => resolve('late'))));
      await bus.request(ok, null);
      await bus.request(failing, null).catch(() => undefined);
      await bus.request(silent, null, { timeoutMs: 50 }).catch(() => undefined);
      await bus.request(nobody, null).catch(() => undefined);
      expect(outcomes).toEqual([
        'haven.v1.observed.ok ok',
        'haven.v1.observed.failing remote-error',
        'haven.v1.observed.silent timeout',
        'haven.v1.observed.nobody no-responders',
      ]);
    } finally {
      release();
      await bus.close();
    }
  });
});
