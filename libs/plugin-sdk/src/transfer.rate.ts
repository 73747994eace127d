import type { DiskProgress, TaskProgress } from './plugin.manifest';

/** The rate is bytes moved over about this much recent time, not since the start. */
export const RATE_WINDOW_MS = 10_000;
/** Samples closer together than this add nothing: the window holds a few dozen at most. */
const MIN_SAMPLE_SPACING_MS = 250;
/** A span shorter than this gives a rate too jumpy to show (two samples a few ms apart). */
const MIN_RATE_SPAN_MS = 500;

interface Sample {
  atMs: number;
  bytes: number;
}

/**
 * Bytes per second over a sliding window of (time, bytes done) samples. Bytes going down (a task
 * attempt starting over) restart the window, so a retry never shows a negative or stale rate.
 */
export class TransferRateWindow {
  private samples: Sample[] = [];

  constructor(private readonly windowMs = RATE_WINDOW_MS) {}

  /** Records `bytes` done at `atMs` and returns the rate, or undefined while it cannot be known. */
  observe(bytes: number, atMs: number): number | undefined {
    const newest = this.samples.at(-1);
    if (newest !== undefined && (bytes < newest.bytes || atMs < newest.atMs)) this.samples = [];
    // A sample too close to the one before the newest replaces the newest: bounded memory.
    const beforeNewest = this.samples.at(-2);
    if (beforeNewest !== undefined && atMs - beforeNewest.atMs < MIN_SAMPLE_SPACING_MS) this.samples.pop();
    this.samples.push({ atMs, bytes });
    // Keep one sample at or before the window's start, so the rate spans the whole window.
    for (
      let second = this.samples.at(1);
      second !== undefined && this.samples.length > 2;
      second = this.samples.at(1)
    ) {
      if (second.atMs > atMs - this.windowMs) break;
      this.samples.shift();
    }
    return this.rate();
  }

  rate(): number | undefined {
    const oldest = this.samples.at(0);
    const newest = this.samples.at(-1);
    if (oldest === undefined || newest === undefined) return undefined;
    const spanMs = newest.atMs - oldest.atMs;
    if (spanMs < MIN_RATE_SPAN_MS) return undefined;
    return ((newest.bytes - oldest.bytes) * 1000) / spanMs;
  }
}

/**
 * Seconds until `bytesTotal` at `bytesPerSecond`: 0 once done, undefined when the total or the rate
 * is unknown or the rate is zero (a stalled transfer has no ETA rather than an infinite one).
 */
export function secondsLeft(
  bytesDone: number | undefined,
  bytesTotal: number | undefined,
  bytesPerSecond: number | undefined,
): number | undefined {
  if (bytesDone === undefined || bytesTotal === undefined || bytesTotal <= 0) return undefined;
  const remaining = bytesTotal - bytesDone;
  if (remaining <= 0) return 0;
  if (bytesPerSecond === undefined || !(bytesPerSecond > 0) || !Number.isFinite(bytesPerSecond))
    return undefined;
  return Math.ceil(remaining / bytesPerSecond);
}

/** The rate and ETA fields for bytes done and total, left out when unknown. */
function rateFields(
  window: TransferRateWindow,
  bytesDone: number,
  bytesTotal: number | undefined,
  atMs: number,
): { bytesPerSecond?: number; etaSeconds?: number } {
  const rate = window.observe(bytesDone, atMs);
  const eta = secondsLeft(bytesDone, bytesTotal, rate);
  return {
    ...(rate === undefined ? {} : { bytesPerSecond: Math.round(rate) }),
    ...(eta === undefined ? {} : { etaSeconds: eta }),
  };
}

/**
 * Adds `bytesPerSecond` and `etaSeconds` to what one task reports, for the task as a whole and each
 * of its disks: the one place these figures are computed (the worker calls it as it publishes, so
 * the API, the stream and the CLI all show the same ones). Time is passed in: this module is pure.
 */
export class TaskProgressRates {
  private readonly task = new TransferRateWindow();
  private readonly disks = new Map<string, TransferRateWindow>();

  decorate(progress: TaskProgress, atMs: number): TaskProgress {
    const { bytesPerSecond: _rate, etaSeconds: _eta, ...reported } = progress;
    if (reported.bytesDone === undefined) return reported;
    const decorated: TaskProgress = {
      ...reported,
      ...rateFields(this.task, reported.bytesDone, reported.bytesTotal, atMs),
    };
    if (reported.disks !== undefined)
      decorated.disks = reported.disks.map((disk): DiskProgress => {
        let window = this.disks.get(disk.key);
        if (window === undefined) this.disks.set(disk.key, (window = new TransferRateWindow()));
        const { bytesPerSecond: _r, etaSeconds: _e, ...plain } = disk;
        return { ...plain, ...rateFields(window, disk.bytesDone, disk.bytesTotal, atMs) };
      });
    return decorated;
  }
}
