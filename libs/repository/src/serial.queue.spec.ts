import { SerialQueue } from './serial.queue';

/** A promise settled from outside, and whether its work was started. */
function gate<T>(value: T) {
  let open!: () => void;
  let fail!: (error: Error) => void;
  const state = { started: false };
  const promise = new Promise<T>((resolve, reject) => {
    open = () => resolve(value);
    fail = reject;
  });
  return {
    state,
    work: () => {
      state.started = true;
      return promise;
    },
    open,
    fail,
  };
}

/** Lets every callback already queued run (promise reactions and I/O callbacks). */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('SerialQueue', () => {
  it('starts each piece of work only once the one before has settled, in the order given', async () => {
    const queue = new SerialQueue();
    const first = gate('a');
    const second = gate('b');
    const third = gate('c');
    const results = [first, second, third].map((piece) => queue.run(piece.work));
    await settle();
    expect([first.state.started, second.state.started, third.state.started]).toEqual([true, false, false]);
    expect(queue.pending).toBe(3);

    first.open();
    await settle();
    expect([second.state.started, third.state.started]).toEqual([true, false]);
    second.open();
    await settle();
    expect(third.state.started).toBe(true);
    third.open();
    await expect(Promise.all(results)).resolves.toEqual(['a', 'b', 'c']);
    expect(queue.pending).toBe(0);
  });

  it('goes on after a piece that failed, and hands that failure to its caller only', async () => {
    const queue = new SerialQueue();
    const failing = gate('never');
    const next = gate('next');
    const failed = queue.run(failing.work);
    const after = queue.run(next.work);
    failing.fail(new Error('derivation failed'));
    await expect(failed).rejects.toThrow('derivation failed');
    await settle();
    expect(next.state.started).toBe(true);
    next.open();
    await expect(after).resolves.toBe('next');
  });
});
