import type { DiskStreamSlots, TaskExecutionContext } from './plugin.manifest';

interface Waiter {
  grant: () => void;
  signal: AbortSignal;
  onAbort: () => void;
}

/** `size` disk stream slots handed out first come, first served (a worker holds one of these). */
export class DiskStreamSemaphore implements DiskStreamSlots {
  private held = 0;
  private readonly waiters: Waiter[] = [];

  constructor(readonly size: number) {
    if (!Number.isSafeInteger(size) || size < 1)
      throw new RangeError(`disk stream slots must be a positive integer, got ${size}`);
  }

  /** Slots held now. */
  get inUse(): number {
    return this.held;
  }

  /** Acquirers waiting for a slot now. */
  get waiting(): number {
    return this.waiters.length;
  }

  acquire(signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    if (this.held < this.size && this.waiters.length === 0) {
      this.held++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        signal,
        grant: () => {
          signal.removeEventListener('abort', waiter.onAbort);
          resolve(this.releaser());
        },
        onAbort: () => {
          const index = this.waiters.indexOf(waiter);
          if (index >= 0) this.waiters.splice(index, 1);
          reject(signal.reason as Error);
        },
      };
      signal.addEventListener('abort', waiter.onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** A release that gives the slot to the next waiter (or back to the pool) once, however often it is called. */
  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      // The slot passes straight to the next waiter: `held` stays the same.
      if (next !== undefined) next.grant();
      else this.held--;
    };
  }
}

/**
 * Runs `stream` holding one of the worker's disk stream slots (at once when the context has no
 * cap). A wait of a second or more is logged, so the run log says why a disk started late.
 */
export async function withDiskStream<T>(
  context: Pick<TaskExecutionContext, 'diskStreams' | 'log'>,
  what: string,
  signal: AbortSignal,
  stream: () => Promise<T>,
): Promise<T> {
  const slots = context.diskStreams;
  if (slots === undefined) return stream();
  const asked = Date.now();
  const release = await slots.acquire(signal);
  try {
    const waitedMs = Date.now() - asked;
    if (waitedMs >= 1000)
      context.log(
        'info',
        `${what} waited ${(waitedMs / 1000).toFixed(1)} s for one of this worker's ${slots.size} disk streams (HAVEN_WORKER_DISK_STREAMS)`,
        { waitedMs, diskStreams: slots.size },
      );
    return await stream();
  } finally {
    release();
  }
}
