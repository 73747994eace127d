/** Calls of an async function running at once: now, and the most seen. */
export interface InFlightCount {
  running: number;
  peak: number;
}

/**
 * `call` wrapped to count how many of its calls run at once; each call first lets `turns(args)`
 * rounds of other work run (setImmediate), so calls overlap as they would on a real backend, and
 * calls given more turns end after later ones.
 */
export function countInFlight<A extends unknown[], R>(
  call: (...args: A) => Promise<R>,
  turns: (...args: A) => number = () => 1,
): { call: (...args: A) => Promise<R>; count: InFlightCount } {
  const count: InFlightCount = { running: 0, peak: 0 };
  return {
    count,
    call: async (...args: A): Promise<R> => {
      count.running++;
      count.peak = Math.max(count.peak, count.running);
      try {
        for (let turn = turns(...args); turn > 0; turn--)
          await new Promise((resolve) => setImmediate(resolve));
        return await call(...args);
      } finally {
        count.running--;
      }
    },
  };
}
