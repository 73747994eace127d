import { performance } from 'node:perf_hooks';

/** `--name N` on the command line as a number, or `fallback`; a value that is no number is refused by name. */
export function arg(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isFinite(value))
    throw new Error(`--${name} must be followed by a number, got ${process.argv[at + 1]}`);
  return value;
}

/** `--name` is on the command line. */
export function flag(name: string): boolean {
  return process.argv.includes(`--${name}`);
}

/** Runs a bench's main: a failure prints its stack and exits 1. */
export function runBench(main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  });
}

/** Seconds taken by `work(0 .. count - 1)`, `inFlight` of them running at once. */
export async function timedInFlight(
  count: number,
  inFlight: number,
  work: (index: number) => Promise<unknown>,
): Promise<number> {
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      for (let index = next++; index < count; index = next++) await work(index);
    }),
  );
  return (performance.now() - start) / 1000;
}
