import { randomBytes, randomUUID } from 'node:crypto';
import type { RemoteCapacity, RemoteStore } from './remote.contract';
import { isRemoteError, type RemoteErrorCode } from './remote.errors';

export type RemoteTestStep = 'write' | 'read' | 'list' | 'delete' | 'capacity';

export interface RemoteTestStepResult {
  step: RemoteTestStep;
  ok: boolean;
  /** The RemoteError code when the step failed. */
  code?: RemoteErrorCode;
  /** What happened, in plain words (and what to do). */
  message?: string;
}

/** The answer to "can Haven use this remote, and how fast is it?" (`POST /remotes/:id/test`). */
export interface RemoteTestResult {
  remote: string;
  type: string;
  ok: boolean;
  testedAt: string;
  durationMs: number;
  steps: RemoteTestStepResult[];
  /** Megabytes (10^6 bytes) per second over the large test objects. */
  writeMBps?: number;
  readMBps?: number;
  /** Round trip of small-object operations (put, get, stat, delete), in milliseconds. */
  latencyMs?: { p50: number; p99: number; samples: number };
  capacity?: RemoteCapacity;
  /** Every problem found, in plain words, for the operator. */
  problems: string[];
}

export interface RemoteTestOptions {
  /** Large objects written then read for throughput. Default 4 of 4 MiB. */
  largeObjects?: number;
  largeObjectBytes?: number;
  /** Small objects for latency. Default 16 of 4 KiB. */
  smallObjects?: number;
  signal?: AbortSignal;
}

/** The self-test's objects live under this prefix, removed at the end whatever happens. */
export const SELF_TEST_PREFIX = 'haven-self-test/';

const STEP_WORDS: Record<RemoteTestStep, string> = {
  write: 'write objects to',
  read: 'read objects back from',
  list: 'list objects on',
  delete: 'delete objects from',
  capacity: 'read the free space of',
};

function plainWords(
  step: RemoteTestStep,
  remote: string,
  error: unknown,
): { code?: RemoteErrorCode; message: string } {
  const action = STEP_WORDS[step];
  if (!isRemoteError(error))
    return { message: `Haven could not ${action} remote "${remote}": ${String(error)}` };
  const reasons: Partial<Record<RemoteErrorCode, string>> = {
    PERMISSION_DENIED: `Haven is not allowed to ${action} remote "${remote}". Grant the account it uses read, write, list and delete rights on this location.`,
    AUTH_FAILED: `Remote "${remote}" refused Haven's credentials. Check the key, secret or password in the remote's settings.`,
    NO_SPACE: `Remote "${remote}" is full: Haven could not ${action} it. Free space or enlarge it.`,
    TRANSIENT: `Remote "${remote}" did not answer reliably when Haven tried to ${action} it. Check that it is reachable from this machine.`,
  };
  return { code: error.code, message: reasons[error.code] ?? error.message };
}

function percentile(sorted: number[], p: number): number {
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return Math.round((sorted[Math.max(0, index)] ?? 0) * 100) / 100;
}

/**
 * Writes, reads back (verifying every byte), lists and deletes a set of test objects under a unique
 * prefix, and measures throughput and latency. Never throws for a remote failure: every problem is
 * reported in the result, in words an operator understands.
 */
export async function testRemote(
  store: RemoteStore,
  options: RemoteTestOptions = {},
): Promise<RemoteTestResult> {
  const started = performance.now();
  const prefix = `${SELF_TEST_PREFIX}${randomUUID()}/`;
  const largeCount = options.largeObjects ?? 4;
  const largeBytes = options.largeObjectBytes ?? 4 * 1024 * 1024;
  const smallCount = options.smallObjects ?? 16;
  const signal = options.signal;
  const steps: RemoteTestStepResult[] = [];
  const problems: string[] = [];
  const latencies: number[] = [];
  const result: RemoteTestResult = {
    remote: store.name,
    type: store.type,
    ok: false,
    testedAt: new Date().toISOString(),
    durationMs: 0,
    steps,
    problems,
  };
  const fail = (step: RemoteTestStep, error: unknown): void => {
    const words = plainWords(step, store.name, error);
    steps.push({ step, ok: false, ...words });
    problems.push(words.message);
  };
  const timed = async <T>(work: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const value = await work();
    latencies.push(performance.now() - t0);
    return value;
  };

  const large = Array.from({ length: largeCount }, (_, i) => ({
    key: `${prefix}large-${i}`,
    body: randomBytes(largeBytes),
  }));
  const small = Array.from({ length: smallCount }, (_, i) => ({
    key: `${prefix}small-${i}`,
    body: randomBytes(4096),
  }));
  const written: string[] = [];
  try {
    // write
    try {
      const t0 = performance.now();
      for (const object of large) {
        await store.put(object.key, object.body, { signal });
        written.push(object.key);
      }
      const seconds = (performance.now() - t0) / 1000;
      for (const object of small) {
        await timed(() => store.put(object.key, object.body, { signal }));
        written.push(object.key);
      }
      if (largeCount > 0) result.writeMBps = round((largeCount * largeBytes) / 1e6 / seconds);
      steps.push({ step: 'write', ok: true });
    } catch (error) {
      fail('write', error);
      return result;
    }
    // read back, byte for byte
    try {
      const t0 = performance.now();
      for (const object of large) {
        const body = await store.getBuffer(object.key, { signal });
        if (!sameContent(body, object.body))
          throw new Error(
            `object "${object.key}" came back different from what was written (${body.length} bytes)`,
          );
      }
      const seconds = (performance.now() - t0) / 1000;
      for (const object of small) {
        const body = await timed(() => store.getBuffer(object.key, { signal }));
        if (!sameContent(body, object.body))
          throw new Error(`object "${object.key}" came back different from what was written`);
        await timed(() => store.stat(object.key, { signal }));
      }
      if (largeCount > 0) result.readMBps = round((largeCount * largeBytes) / 1e6 / seconds);
      steps.push({ step: 'read', ok: true });
    } catch (error) {
      fail('read', error);
    }
    // list
    try {
      const listed = new Set<string>();
      for await (const object of store.listAll(prefix, { signal })) listed.add(object.key);
      const missing = written.filter((key) => !listed.has(key));
      if (missing.length > 0)
        throw new Error(`listing missed ${missing.length} of ${written.length} test objects`);
      steps.push({ step: 'list', ok: true });
    } catch (error) {
      fail('list', error);
    }
    // capacity (unknown is fine; a failure is reported but does not fail the test)
    try {
      result.capacity = await store.capacity({ signal });
      steps.push({ step: 'capacity', ok: true });
    } catch (error) {
      const words = plainWords('capacity', store.name, error);
      steps.push({ step: 'capacity', ok: false, ...words });
    }
  } finally {
    // delete, also after a failure, so the self-test leaves nothing behind
    try {
      for (const key of written) {
        if (key.includes('/small-')) await timed(() => store.delete(key, { signal }));
        else await store.delete(key, { signal });
      }
      const left: string[] = [];
      for await (const object of store.listAll(prefix, { signal })) left.push(object.key);
      if (left.length > 0)
        throw new Error(`${left.length} test objects are still listed after deleting them`);
      steps.push({ step: 'delete', ok: true });
    } catch (error) {
      fail('delete', error);
    }
    if (latencies.length > 0) {
      const sorted = [...latencies].sort((a, b) => a - b);
      result.latencyMs = { p50: percentile(sorted, 50), p99: percentile(sorted, 99), samples: sorted.length };
    }
    result.ok = steps.every((step) => step.ok || step.step === 'capacity');
    result.durationMs = Math.round(performance.now() - started);
  }
  return result;
}

function sameContent(a: Buffer, b: Buffer): boolean {
  return a.equals(b);
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
