import { readAhead } from './read-ahead';

/** A source that fails if asked for an item while an earlier request is still pending. */
function strictSource(count: number, failAt?: number) {
  const asked: number[] = [];
  let pending = false;
  let returned = false;
  let next = 0;
  const iterable: AsyncIterable<number> = {
    [Symbol.asyncIterator]: () => ({
      next: async () => {
        if (pending) throw new Error('next() called while a request was pending');
        pending = true;
        await new Promise((resolve) => setImmediate(resolve));
        pending = false;
        if (next === failAt) throw new Error(`source failed at ${next}`);
        if (next >= count) return { done: true, value: undefined };
        asked.push(next);
        return { done: false, value: next++ };
      },
      return: () => {
        returned = true;
        return Promise.resolve({ done: true, value: undefined });
      },
    }),
  };
  return { iterable, asked, returned: () => returned };
}

describe('readAhead', () => {
  it('hands out every item in order, reading up to `depth` ahead, one request at a time', async () => {
    const source = strictSource(10);
    const read: number[] = [];
    const aheadWhenTaken: number[] = [];
    const got: number[] = [];
    for await (const item of readAhead(source.iterable, 3, (value) => read.push(value))) {
      got.push(item);
      // Let the read-ahead run while this item is "being worked on".
      for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
      aheadWhenTaken.push(Math.max(...read) - item);
    }
    expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(read).toEqual(got);
    // While the consumer held item n, items up to n + 3 had been read (fewer at the end).
    expect(aheadWhenTaken).toEqual([3, 3, 3, 3, 3, 3, 3, 2, 1, 0]);
  });

  it('gives the items read ahead to onDropped and closes the source when the consumer stops', async () => {
    const source = strictSource(10);
    const dropped: number[] = [];
    for await (const item of readAhead(
      source.iterable,
      3,
      () => undefined,
      (value) => dropped.push(value),
    )) {
      if (item === 1) {
        for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));
        break;
      }
    }
    expect(dropped).toEqual([2, 3, 4]);
    expect(source.returned()).toBe(true);
  });

  it("passes the source's failure on at its place, and asks nothing more of it", async () => {
    const source = strictSource(10, 4);
    const got: number[] = [];
    await expect(
      (async () => {
        for await (const item of readAhead(source.iterable, 3, () => undefined)) got.push(item);
      })(),
    ).rejects.toThrow('source failed at 4');
    expect(got).toEqual([0, 1, 2, 3]);
    expect(source.asked).toEqual([0, 1, 2, 3]);
  });

  it('takes a plain iterable too', async () => {
    const got: number[] = [];
    for await (const item of readAhead([1, 2, 3], 2, () => undefined)) got.push(item);
    expect(got).toEqual([1, 2, 3]);
  });
});
