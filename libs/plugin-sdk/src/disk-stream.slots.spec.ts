import { DiskStreamSemaphore, withDiskStream } from './disk-stream.slots';

const never = new AbortController().signal;
const settledNow = async <T>(promise: Promise<T>): Promise<'pending' | 'resolved' | 'rejected'> => {
  let state: 'pending' | 'resolved' | 'rejected' = 'pending';
  promise.then(
    () => (state = 'resolved'),
    () => (state = 'rejected'),
  );
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return state;
};

describe('DiskStreamSemaphore', () => {
  it('refuses a size that is not a positive integer', () => {
    expect(() => new DiskStreamSemaphore(0)).toThrow(/positive integer, got 0/);
    expect(() => new DiskStreamSemaphore(1.5)).toThrow(/positive integer/);
  });

  it('hands out at most `size` slots and the next ones first come, first served', async () => {
    const slots = new DiskStreamSemaphore(2);
    const order: string[] = [];
    const first = await slots.acquire(never);
    const second = await slots.acquire(never);
    const third = slots.acquire(never).then((release) => (order.push('third'), release));
    const fourth = slots.acquire(never).then((release) => (order.push('fourth'), release));
    expect(await settledNow(third)).toBe('pending');
    expect(slots.inUse).toBe(2);
    expect(slots.waiting).toBe(2);

    second();
    expect(await settledNow(third)).toBe('resolved');
    expect(await settledNow(fourth)).toBe('pending');
    first();
    (await fourth)();
    (await third)();
    expect(order).toEqual(['third', 'fourth']);
    expect(slots.inUse).toBe(0);
    expect(slots.waiting).toBe(0);
  });

  it('a release called twice frees one slot only', async () => {
    const slots = new DiskStreamSemaphore(1);
    const release = await slots.acquire(never);
    const next = slots.acquire(never);
    release();
    release();
    const again = slots.acquire(never);
    expect(await settledNow(next)).toBe('resolved');
    expect(await settledNow(again)).toBe('pending');
    expect(slots.inUse).toBe(1);
  });

  it('a waiter whose signal aborts rejects with its reason and takes no slot', async () => {
    const slots = new DiskStreamSemaphore(1);
    const release = await slots.acquire(never);
    const cancel = new AbortController();
    const cancelled = slots.acquire(cancel.signal);
    const after = slots.acquire(never);
    cancel.abort(new Error('run cancelled'));
    await expect(cancelled).rejects.toThrow('run cancelled');
    release();
    expect(await settledNow(after)).toBe('resolved');
    expect(slots.inUse).toBe(1);
    await expect(slots.acquire(cancel.signal)).rejects.toThrow('run cancelled');
  });
});

describe('withDiskStream', () => {
  const log = jest.fn();

  it('holds a slot while the stream runs and gives it back when it fails', async () => {
    const slots = new DiskStreamSemaphore(1);
    let inside = -1;
    await expect(
      withDiskStream({ diskStreams: slots, log }, 'disk xvda', never, () => {
        inside = slots.inUse;
        return Promise.reject(new Error('export failed'));
      }),
    ).rejects.toThrow('export failed');
    expect(inside).toBe(1);
    expect(slots.inUse).toBe(0);
  });

  it('runs at once without a cap', async () => {
    expect(await withDiskStream({ log }, 'disk xvda', never, () => Promise.resolve(42))).toBe(42);
  });
});
