import { BlockFanout } from './block.fanout';

async function* counting(limit: number, pulled: number[]): AsyncGenerator<number, void, undefined> {
  try {
    for (let value = 0; value < limit; value++) {
      pulled.push(value);
      yield await Promise.resolve(value);
    }
  } finally {
    pulled.push(-1); // closed
  }
}

describe('BlockFanout', () => {
  it('gives every consumer every item, reading the source once', async () => {
    const pulled: number[] = [];
    const fanout = new BlockFanout(counting(50, pulled), 3);
    const seen = await Promise.all(
      [0, 1, 2].map(async (index) => {
        const values: number[] = [];
        for await (const value of fanout.consumer(index)) values.push(value);
        return values;
      }),
    );
    const all = Array.from({ length: 50 }, (_, value) => value);
    expect(seen).toEqual([all, all, all]);
    expect(pulled).toEqual([...all, -1]);
  });

  it('never reads more than one item ahead of the slowest consumer', async () => {
    const pulled: number[] = [];
    const fanout = new BlockFanout(counting(100, pulled), 2);
    const fast = (async () => {
      for await (const value of fanout.consumer(0)) expect(typeof value).toBe('number');
    })();
    const slow = fanout.consumer(1)[Symbol.asyncIterator]();
    for (let step = 0; step < 5; step++) {
      expect((await slow.next()).value).toBe(step);
      await new Promise((resolve) => setImmediate(resolve));
      expect(pulled.length).toBeLessThanOrEqual(step + 2);
    }
    await slow.return?.();
    await fast;
    expect(pulled.at(-1)).toBe(-1);
  });

  it('a consumer that stops does not hold the others back; close() stops the source', async () => {
    const pulled: number[] = [];
    const fanout = new BlockFanout(counting(1000, pulled), 2);
    const stopped = fanout.consumer(1)[Symbol.asyncIterator]();
    await stopped.next();
    await stopped.return?.();
    let count = 0;
    for await (const value of fanout.consumer(0)) {
      count++;
      if (value === 10) await fanout.close();
    }
    expect(count).toBe(11);
    expect(pulled.at(-1)).toBe(-1);
    expect(pulled.length).toBeLessThan(20);
  });
});
