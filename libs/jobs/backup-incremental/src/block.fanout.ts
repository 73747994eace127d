/**
 * Hands one source's items to several consumers (one per remote) so a disk is read from the pool
 * once. The source is pulled only when every active consumer has finished with the item before the
 * one asked for: at most two items are held, and the slowest remote sets the pace (back-pressure).
 * A consumer that stops (ends or fails) no longer holds the others back; when all stopped, the
 * source is closed (which cancels the export).
 *
 * An item with `release` (a reused buffer) is shared: each consumer gets it with a `release` of its
 * own, and the source's is called once every consumer that was to receive it has released it or
 * stopped before receiving it. A consumer that stops after receiving an item without releasing it
 * keeps it from reuse for good (a failed writer may still be reading it).
 */
export class BlockFanout<T> {
  /** Items each consumer has received (the step it asks for next); Infinity once it stopped. */
  private readonly done: number[];
  /** The step each consumer last asked for: it is finished with every item before it. */
  private readonly asked: number[];
  private readonly items = new Map<number, Promise<IteratorResult<T, undefined>>>();
  /** Pulled items with a `release`: how many consumers still hold or are still to receive them. */
  private readonly shares = new Map<number, { remaining: number; release: () => void }>();
  private waiters: (() => void)[] = [];
  private closed = false;

  constructor(
    private readonly source: AsyncIterator<T, unknown, undefined>,
    consumers: number,
  ) {
    this.done = Array.from({ length: consumers }, () => 0);
    this.asked = Array.from({ length: consumers }, () => 0);
  }

  consumer(index: number): AsyncIterable<T> {
    return {
      [Symbol.asyncIterator]: () => ({
        next: () => this.next(index),
        return: async () => {
          await this.stop(index);
          return { done: true, value: undefined };
        },
      }),
    };
  }

  /** Stops every consumer's source (on failure of the whole backup). */
  async close(): Promise<void> {
    for (let index = 0; index < this.done.length; index++) this.stopped(index);
    this.wake();
    await this.closeSource();
  }

  private async next(index: number): Promise<IteratorResult<T, undefined>> {
    const step = this.done[index] ?? Infinity;
    if (step === Infinity) return { done: true, value: undefined };
    this.asked[index] = step;
    this.forget();
    this.wake();
    for (;;) {
      const ready = this.items.get(step);
      if (ready !== undefined) {
        const result = await ready;
        // Stopped (closed) while waiting: the item is not this consumer's any more.
        if (this.done[index] === Infinity) return { done: true, value: undefined };
        if (result.done === true) {
          this.stopped(index);
          this.wake();
          await this.closeIfAllStopped();
          return result;
        }
        this.done[index] = step + 1;
        return { done: false, value: this.handOut(step, result.value) };
      }
      // One item of read-ahead: step k is read once everyone is finished with item k - 2.
      if (this.slowest() >= step - 1) {
        this.items.set(step, this.pull(step));
        continue;
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private async pull(step: number): Promise<IteratorResult<T, undefined>> {
    const result = await this.source.next();
    if (result.done === true) return { done: true, value: undefined };
    const release = releaseOf(result.value);
    if (release !== undefined) {
      // Every consumer not stopped receives this item (none is past it: it is pulled when first asked for).
      const remaining = this.done.filter((done) => done !== Infinity).length;
      if (remaining === 0) release();
      else this.shares.set(step, { remaining, release });
    }
    return result;
  }

  /** The item as one consumer receives it: with a release of its own when the item is shared. */
  private handOut(step: number, item: T): T {
    if (!this.shares.has(step)) return item;
    let released = false;
    return {
      ...(item as T & object),
      release: () => {
        if (released) throw new Error(`item ${step} of the fan-out was released twice by one consumer`);
        released = true;
        this.unshare(step);
      },
    };
  }

  /** One holder of item `step` is finished with it; the last one gives it back to the source. */
  private unshare(step: number): void {
    const share = this.shares.get(step);
    if (share === undefined) return;
    share.remaining--;
    if (share.remaining > 0) return;
    this.shares.delete(step);
    share.release();
  }

  private slowest(): number {
    return Math.min(...this.asked);
  }

  private stopped(index: number): void {
    const received = this.done[index] ?? Infinity;
    // Items this consumer was still to receive no longer wait for it.
    if (received !== Infinity)
      for (const step of [...this.shares.keys()]) if (step >= received) this.unshare(step);
    this.done[index] = Infinity;
    this.asked[index] = Infinity;
  }

  /** Items every consumer is past are dropped (the data is referenced by consumers only). */
  private forget(): void {
    const slowest = this.slowest();
    for (const step of this.items.keys()) if (step < slowest) this.items.delete(step);
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }

  private async stop(index: number): Promise<void> {
    this.stopped(index);
    this.forget();
    this.wake();
    await this.closeIfAllStopped();
  }

  private async closeIfAllStopped(): Promise<void> {
    if (this.slowest() === Infinity) await this.closeSource();
  }

  private async closeSource(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.items.clear();
    await this.source.return?.(undefined);
  }
}

/** The `release` of an item that has one (an object with a release function). */
function releaseOf(item: unknown): (() => void) | undefined {
  if (typeof item !== 'object' || item === null || !('release' in item)) return undefined;
  const release = (item as { release?: unknown }).release;
  return typeof release === 'function' ? () => (release as () => void).call(item) : undefined;
}
