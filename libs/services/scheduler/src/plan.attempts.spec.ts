import { type PlannedTask, PlanUnavailableError } from '@haven/plugin-sdk';
import { PlanAttemptsError, planBackoffMs, planWithRetries } from './plan.attempts';

/** A clock that moves only when the retry loop waits, so no test depends on timing. */
function fakeTime() {
  let now = 0;
  const waits: number[] = [];
  return {
    waits,
    now: () => now,
    wait: (ms: number) => {
      waits.push(ms);
      now += ms;
      return Promise.resolve();
    },
  };
}

const vmTask: PlannedTask = { type: 't', subject: 'vm-1', input: { vm: 'vm-1' } };
const silentPool: PlannedTask = {
  type: 't',
  subject: 'pool b',
  input: {},
  failure: { message: 'pool "b" did not answer', transient: true },
};

/** A planner that fails with `errors` in turn, then returns `tasks`. */
function planner(errors: Error[], tasks: PlannedTask[] = [vmTask]) {
  let calls = 0;
  return {
    calls: () => calls,
    plan: () => {
      const error = errors.at(calls++);
      return error === undefined ? Promise.resolve(tasks) : Promise.reject(error);
    },
  };
}

describe('planning with retries', () => {
  const signal = new AbortController().signal;

  it('retries a silent pool per the job setting, waiting longer each time, and reports each failed attempt', async () => {
    const time = fakeTime();
    const plan = planner([
      new PlanUnavailableError('pool "a" did not answer'),
      new PlanUnavailableError('still silent'),
    ]);
    const outcome = await planWithRetries(plan.plan, { retries: 3, deadline: 60_000, signal, ...time });
    expect(outcome.tasks).toEqual([vmTask]);
    expect(outcome.failures).toEqual([
      { attempt: 1, message: 'pool "a" did not answer', retried: true },
      { attempt: 2, message: 'still silent', retried: true },
    ]);
    expect(time.waits).toEqual([planBackoffMs(1), planBackoffMs(2)]);
    expect(planBackoffMs(2)).toBeGreaterThan(planBackoffMs(1));
  });

  it("fails after retries + 1 attempts, with every attempt's reason", async () => {
    const time = fakeTime();
    const plan = planner([1, 2, 3, 4].map((n) => new PlanUnavailableError(`silent ${n}`)));
    const error = await planWithRetries(plan.plan, { retries: 2, deadline: 60_000, signal, ...time }).catch(
      (caught: unknown) => caught,
    );
    expect(plan.calls()).toBe(3);
    expect(error).toBeInstanceOf(PlanAttemptsError);
    expect(
      (error as PlanAttemptsError).attempts.map((attempt) => [attempt.message, attempt.retried]),
    ).toEqual([
      ['silent 1', true],
      ['silent 2', true],
      ['silent 3', false],
    ]);
    expect((error as Error).message).toBe('silent 3 (after 3 attempts)');
  });

  it('does not retry what a retry cannot fix, nor without retries, nor past the deadline', async () => {
    const wrong = planner([new Error('job selection has no pools'), new Error('unreached')]);
    await expect(
      planWithRetries(wrong.plan, { retries: 5, deadline: 60_000, signal, ...fakeTime() }),
    ).rejects.toThrow('job selection has no pools');
    expect(wrong.calls()).toBe(1);
    const none = planner([new PlanUnavailableError('silent')]);
    await expect(
      planWithRetries(none.plan, { retries: 0, deadline: 60_000, signal, ...fakeTime() }),
    ).rejects.toThrow('silent');
    expect(none.calls()).toBe(1);
    // Four retries would wait 1 + 2 + 4 + 8 s: a 5 s budget allows two.
    const late = planner([1, 2, 3, 4, 5].map((n) => new PlanUnavailableError(`silent ${n}`)));
    await expect(
      planWithRetries(late.plan, { retries: 4, deadline: 5_000, signal, ...fakeTime() }),
    ).rejects.toThrow('silent 3');
    expect(late.calls()).toBe(3);
  });

  it('plans again while a pool of several is silent, and keeps the last plan with its failed task', async () => {
    const time = fakeTime();
    const plan = planner([], [vmTask, silentPool]);
    const outcome = await planWithRetries(plan.plan, { retries: 2, deadline: 60_000, signal, ...time });
    expect(plan.calls()).toBe(3);
    expect(outcome.tasks).toEqual([vmTask, silentPool]);
    expect(outcome.failures.map((failure) => failure.message)).toEqual([
      'pool "b" did not answer',
      'pool "b" did not answer',
    ]);
    // A task that failed for good (a VM in no pool) is not a reason to plan again.
    const gone = planner(
      [],
      [{ ...silentPool, failure: { message: 'VM x is in no pool', transient: false } }],
    );
    await planWithRetries(gone.plan, { retries: 2, deadline: 60_000, signal, ...fakeTime() });
    expect(gone.calls()).toBe(1);
  });
});
