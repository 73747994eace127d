export interface RetryPolicy {
  /** Attempts after the first one, for TRANSIENT failures only. */
  retries: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { retries: 4, baseDelayMs: 200, maxDelayMs: 10_000 };

/**
 * Delay before retry number `attempt` (1-based): exponential with "full jitter", so that many
 * workers hitting the same failing remote do not retry in lock-step.
 */
export function backoffDelay(
  policy: RetryPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Retries `work` while `isTransient(error)` says so, with the same backoff as the base class. For
 * drivers' inner steps that the base class cannot retry: one buffered part of a streamed upload.
 */
export async function retryTransient<T>(
  work: () => Promise<T>,
  isTransient: (error: unknown) => boolean,
  signal: AbortSignal,
  policy: RetryPolicy = DEFAULT_RETRY_POLICY,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (signal.aborted || attempt > policy.retries || !isTransient(error)) throw error;
      await sleep(backoffDelay(policy, attempt), signal);
    }
  }
}
