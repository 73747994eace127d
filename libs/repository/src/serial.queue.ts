/**
 * Runs the work given to it one piece at a time, in the order it was given: each piece starts once
 * the one before has settled, and a piece that fails does not stop the next.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private given = 0;
  private settled = 0;

  run<T>(work: () => Promise<T>): Promise<T> {
    this.given++;
    const result = this.tail.then(work).finally(() => this.settled++);
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Pieces given and not yet settled (running or waiting). */
  get pending(): number {
    return this.given - this.settled;
  }
}
