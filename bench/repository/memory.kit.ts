// Memory measurement shared by the repository's memory benches (maintenance-memory,
// existence-memory, jobs/dense-base-memory): deterministic chunk ids, empty chunk files on a local
// remote, and a sampler of RSS and heap + array buffers above a settled baseline. Run them with
// --expose-gc (a forced collection before each baseline).
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { chunkKey } from '@haven/repository';

export const MiB = 2 ** 20;
const ID = 32;
/** Samples memory every this many items of a loop (a loop is synchronous: no timer can fire). */
export const SAMPLE_EVERY = 8192;

/** Deterministic pseudo-random bytes (mulberry32): the same ids in every process. */
export function seededIds(count: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(count * ID);
  let state = seed >>> 0;
  for (let at = 0; at < out.length; at += 4) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out.writeUInt32LE((t ^ (t >>> 14)) >>> 0, at);
  }
  return out;
}

const gc = (): void => (globalThis as { gc?: () => void }).gc?.();

/**
 * Collects, lets the event loop turn (array buffers are freed after a collection, off the main
 * thread), and collects again.
 */
export async function settle(): Promise<void> {
  gc();
  await new Promise((resolve) => setTimeout(resolve, 250));
  gc();
}

export class Sampler {
  private peakRss = 0;
  private peakHeap = 0;

  private constructor(
    private readonly baseRss: number,
    private readonly baseHeap: number,
  ) {}

  /** A sampler whose baseline is the memory held now, once settled. */
  static async start(): Promise<Sampler> {
    await settle();
    const usage = process.memoryUsage();
    return new Sampler(usage.rss, usage.heapUsed + usage.arrayBuffers);
  }

  /** Every SAMPLE_EVERY calls (or when forced), takes a sample. */
  tick(n: number): void {
    if (n % SAMPLE_EVERY === 0) this.sample();
  }

  sample(): number {
    const usage = process.memoryUsage();
    const heap = usage.heapUsed + usage.arrayBuffers - this.baseHeap;
    this.peakRss = Math.max(this.peakRss, usage.rss - this.baseRss);
    this.peakHeap = Math.max(this.peakHeap, heap);
    return heap;
  }

  /** When the mark (or reference) phase ended. */
  markedAt = 0;

  marked(): void {
    this.markedAt = performance.now();
    this.sample();
  }

  /**
   * The held memory after a forced collection (also a sample for the peaks). Array buffers are
   * freed after the collection, off the main thread: the event loop turns before the sample.
   */
  async kept(): Promise<number> {
    await settle();
    return this.sample();
  }

  result(): { peakRssMiB: number; peakHeapMiB: number } {
    return { peakRssMiB: this.peakRss / MiB, peakHeapMiB: this.peakHeap / MiB };
  }
}

/**
 * Chunk objects on a local remote rooted at `root`: an empty file at the key of each of the `count`
 * ids of `records` (32 bytes each) but those `skip` names (existence checks only count objects:
 * listings and stats never read them). Returns how many were written.
 */
export function writeEmptyChunks(
  root: string,
  records: Buffer,
  count: number,
  skip: (n: number) => boolean = () => false,
): number {
  const folders = new Set<string>();
  let written = 0;
  for (let n = 0; n < count; n++) {
    if (skip(n)) continue;
    const file = join(root, ...chunkKey(records.toString('hex', n * ID, (n + 1) * ID)).split('/'));
    const folder = dirname(file);
    if (!folders.has(folder)) {
      mkdirSync(folder, { recursive: true });
      folders.add(folder);
    }
    closeSync(openSync(file, 'w'));
    written++;
  }
  return written;
}

/**
 * `script` again in a fresh process (bin/run.js, this process's node flags) with `args`: one side
 * of a memory bench, measured apart from the other; its output is the side's figures as JSON.
 */
export function runSideProcess<T>(script: string, args: readonly string[]): T {
  const child = spawnSync(
    process.execPath,
    [...process.execArgv, join(__dirname, '../../bin/run.js'), script, ...args],
    { encoding: 'utf8', maxBuffer: 64 * MiB },
  );
  if (child.status !== 0)
    throw new Error(
      `${basename(script)} ${args.join(' ')} failed (${child.status ?? child.signal}): ${child.stderr}`,
    );
  return JSON.parse(child.stdout.trim()) as T;
}
