import { type TaskProgress, TaskProgressRates } from '@haven/plugin-sdk';

/** Progress goes out at most this often per task. */
export const PROGRESS_INTERVAL_MS = 500;

/**
 * A task whose executor has not reported for this long has its last figures sent again, sampled
 * now: its rate falls toward zero as the window slides past its last movement, and its ETA goes,
 * so a stalled transfer does not keep showing its last speed.
 */
export const STALLED_REPUBLISH_MS = 5_000;

export interface TaskProgressReporter {
  /** What the executor calls (TaskExecutionContext.reportProgress). */
  report(progress: TaskProgress): void;
  /** Stops the timers; returns the task's last figures (rates included) to go with its end. */
  stop(): TaskProgress | undefined;
}

/**
 * Rate-limits a task's progress and decorates it with rates and ETAs (TaskProgressRates) as it
 * goes out. `working` is called on each report (the executor is alive); `publish` gets each
 * decorated progress.
 */
export function createTaskProgressReporter(
  publish: (progress: TaskProgress) => void,
  working: () => void,
  now: () => number = Date.now,
): TaskProgressReporter {
  let last = 0;
  let pending: TaskProgress | undefined;
  let reported: TaskProgress | undefined;
  let timer: NodeJS.Timeout | undefined;
  // Rates are sampled as progress goes out (at most every PROGRESS_INTERVAL_MS): a few numbers per disk.
  const rates = new TaskProgressRates();
  let published: TaskProgress | undefined;
  const flush = (): void => {
    timer = undefined;
    if (!pending) return;
    const progress = rates.decorate(pending, now());
    published = progress;
    pending = undefined;
    last = now();
    publish(progress);
  };
  const stalled = setInterval(() => {
    if (timer !== undefined || reported === undefined || now() - last < STALLED_REPUBLISH_MS) return;
    pending = reported;
    flush();
  }, STALLED_REPUBLISH_MS);
  stalled.unref();
  return {
    report: (progress) => {
      working();
      pending = progress;
      reported = progress;
      if (timer) return;
      const wait = PROGRESS_INTERVAL_MS - (now() - last);
      if (wait <= 0) flush();
      else timer = setTimeout(flush, wait);
    },
    stop: () => {
      clearInterval(stalled);
      if (timer) clearTimeout(timer);
      timer = undefined;
      // The task's last figures go with its end, so every follower sees where it finished.
      return pending === undefined ? published : rates.decorate(pending, now());
    },
  };
}
