import { type PlannedTask, PlanUnavailableError } from '@haven/plugin-sdk';
import { XapiTransferError, XapiUnreachableError } from '@haven/xapi';

/** Pause before the attempt after `failures` failed ones: 1 s, 2 s, 4 s… at most 15 s. */
export function planBackoffMs(failures: number): number {
  return Math.min(15_000, 1_000 * 2 ** Math.max(0, failures - 1));
}

/** A failure planning again later may get past: a pool that did not answer. */
export function isTransientPlanError(error: unknown): boolean {
  return (
    error instanceof PlanUnavailableError ||
    error instanceof XapiUnreachableError ||
    error instanceof XapiTransferError
  );
}

/** One failed attempt, for the run's log. */
export interface PlanAttemptFailure {
  attempt: number;
  message: string;
  /** Another attempt follows. */
  retried: boolean;
}

/** Every attempt failed; `attempts` holds each one's reason, the last one last. */
export class PlanAttemptsError extends Error {
  constructor(
    readonly attempts: readonly PlanAttemptFailure[],
    readonly last: unknown,
  ) {
    const final = attempts.at(-1)?.message ?? 'planning failed';
    super(attempts.length > 1 ? `${final} (after ${attempts.length} attempts)` : final);
    this.name = 'PlanAttemptsError';
  }
}

export interface PlanAttemptOptions {
  /** Extra attempts after a transient failure. */
  retries: number;
  /** Planning gives up retrying when the next attempt would start after this (epoch ms). */
  deadline: number;
  /** Aborted when planning must stop (the deadline, shutdown). */
  signal: AbortSignal;
  now?: () => number;
  /** Waits `ms` (or until `signal` aborts); tests pass one that does not. */
  wait?: (ms: number, signal: AbortSignal) => Promise<void>;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function pause(ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Plans a run, again after a transient failure (up to `retries` times, with a growing pause, while
 * the deadline allows): a plan that throws one, or a plan some of whose tasks failed transiently
 * (a pool of several did not answer) is tried again; the last attempt's plan is kept even with
 * such tasks, so the pools that answered are backed up. Every failed attempt is returned (or
 * carried by the `PlanAttemptsError` thrown) for the run's log.
 */
export async function planWithRetries(
  plan: () => Promise<PlannedTask[]>,
  options: PlanAttemptOptions,
): Promise<{ tasks: PlannedTask[]; failures: PlanAttemptFailure[] }> {
  const now = options.now ?? Date.now;
  const wait = options.wait ?? pause;
  const failures: PlanAttemptFailure[] = [];
  for (let attempt = 1; ; attempt++) {
    const canRetry = (): boolean =>
      attempt <= options.retries &&
      !options.signal.aborted &&
      now() + planBackoffMs(attempt) < options.deadline;
    let tasks: PlannedTask[];
    try {
      tasks = await plan();
    } catch (error) {
      const retried = isTransientPlanError(error) && canRetry();
      failures.push({ attempt, message: errorMessage(error), retried });
      if (!retried) throw new PlanAttemptsError(failures, error);
      await wait(planBackoffMs(attempt), options.signal);
      continue;
    }
    const transient = tasks.flatMap((task) => (task.failure?.transient === true ? [task.failure] : []));
    if (transient.length === 0 || !canRetry()) return { tasks, failures };
    failures.push({
      attempt,
      message: transient.map((failure) => failure.message).join('; '),
      retried: true,
    });
    await wait(planBackoffMs(attempt), options.signal);
  }
}
