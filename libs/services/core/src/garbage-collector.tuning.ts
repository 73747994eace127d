import { setFlagsFromString } from 'node:v8';

let tuned = false;

/**
 * For processes that move disk data (the transfer role, all-in-one). Measured on the 8 GiB backup
 * bench (docs/benchmarks/jobs.md, "garbage collector"): with V8's incremental marking, a worker
 * whose heap is ~50 MB while gigabytes of Buffers stream through it starts a new marking cycle
 * every ~15 MB of data (~300-450 major GCs per 6 GiB, half the process's CPU time); without it,
 * 6 major GCs, each a pause of ~25 ms, and the backup takes 15 s instead of 23-38 s. Pauses that
 * short do not matter to a data mover, nor to the API beside it in an all-in-one process.
 * Called once, before the data path runs; setting the flag later is still honoured by V8 (it is
 * read whenever a cycle would start).
 */
export function tuneGarbageCollectorForDataPath(): void {
  if (tuned) return;
  tuned = true;
  setFlagsFromString('--no-incremental-marking');
}
