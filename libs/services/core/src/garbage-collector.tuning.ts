import { setFlagsFromString } from 'node:v8';

let tuned = false;

/**
 * For processes that move disk data: a transfer worker calls it when it starts its first task
 * (after boot, so that the boot's garbage was collected the default way: 117 MiB of RSS at rest
 * instead of 158 when called at boot). Measured on the 8 GiB backup
 * bench (docs/benchmarks/jobs.md, "Garbage collector"): a worker whose heap is ~50 MB while
 * gigabytes of Buffers stream through it fell into starting a new incremental-marking cycle
 * every ~15 MB of data (~300-450 major GCs per 6 GiB, half the process's CPU time). Without
 * incremental marking: 5-6 major GCs, each a pause of ~25 ms (nothing to a data mover, nor to an
 * API beside it in an all-in-one process), and the backup takes 15-19 s instead of 22-38 s.
 * Marking started only near the old generation's limit (--incremental-marking-soft-trigger /
 * hard-trigger) avoided it through bin/run.js but not in the compiled worker (28 s of CPU
 * instead of 19). V8 reads the flag whenever a cycle would start, so setting it late works.
 */
export function tuneGarbageCollectorForDataPath(): void {
  if (tuned) return;
  tuned = true;
  setFlagsFromString('--no-incremental-marking');
}
