import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';

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

/** One line of /proc/diskstats: what settleDisk compares. */
interface DiskActivity {
  inFlight: number;
  /** Writes, flushes and discards completed so far (any of them moving means the disk is busy). */
  completed: string;
}

async function diskActivity(major: number, minor: number): Promise<DiskActivity | undefined> {
  const stats = await readFile('/proc/diskstats', 'utf8').catch(() => '');
  for (const line of stats.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (Number(fields[0]) !== major || Number(fields[1]) !== minor) continue;
    // Fields (kernel docs, iostats): 7 writes completed, 11 I/Os in progress, 14 discards
    // completed, 18 flushes completed (counted from the device's name at index 2).
    return { inFlight: Number(fields[11]), completed: [fields[7], fields[14], fields[18]].join('/') };
  }
  return undefined;
}

/**
 * Waits until the disk holding `folder` is quiet: everything written so far synced, then no I/O in
 * flight and none completed for a second. A file system mounted with `discard` trims the blocks
 * of a deleted file at its next journal commit, in the background: without this, the measurement
 * after a big `rm` (or after a big write's writeback) pays for the one before it. Gives up after
 * two minutes (a disk that never rests: the figures then say so by their spread).
 */
export async function settleDisk(folder: string): Promise<void> {
  await promisify(execFile)('sync', ['-f', folder]);
  const dev = (await stat(folder)).dev;
  // Linux's dev_t encoding (glibc's gnu_dev_major / gnu_dev_minor).
  const major = ((dev >> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | ((dev >> 12) & ~0xff);
  const deadline = Date.now() + 120_000;
  let last = await diskActivity(major, minor);
  if (last === undefined) return; // not a block device /proc/diskstats lists (tmpfs, overlay)
  let quietSince = Date.now();
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const now = await diskActivity(major, minor);
    if (now === undefined) return;
    if (now.inFlight > 0 || now.completed !== last.completed) quietSince = Date.now();
    else if (Date.now() - quietSince >= 1000) return;
    last = now;
  }
}
