/**
 * Hands one source's items to several consumers (one per remote) so a disk is read from the pool
 * once. The source is pulled only when every active consumer has finished with the item before the
 * one asked for: at most two items are held, and the slowest remote sets the pace (back-pressure).
 * A consumer that stops (ends or fails) no longer holds the others back; when all stopped, the
 * source is closed (which cancels the export).
 */
export class BlockFanout<T> {
  /** Items each consumer has received (the step it asks for next); Infinity once it stopped. */
  private readonly done: number[];
  /** The step each consumer last asked for: it is finished with every item before it. */
  private readonly asked: number[];
  private readonly items = new Map<number, Promise<IteratorResult<T, undefined>>>();
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
        if (result.done === true) {
          this.stopped(index);
          this.wake();
          await this.closeIfAllStopped();
        } else {
          this.done[index] = step + 1;
        }
        return result;
      }
      // One item of read-ahead: step k is read once everyone is finished with item k - 2.
      if (this.slowest() >= step - 1) {
        this.items.set(step, this.pull());
        continue;
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private async pull(): Promise<IteratorResult<T, undefined>> {
    const result = await this.source.next();
    return result.done === true ? { done: true, value: undefined } : result;
  }

  private slowest(): number {
    return Math.min(...this.asked);
  }

  private stopped(index: number): void {
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
