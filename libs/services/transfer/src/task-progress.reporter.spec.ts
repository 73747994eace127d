import type { TaskProgress } from '@haven/plugin-sdk';
import {
  createTaskProgressReporter,
  PROGRESS_INTERVAL_MS,
  STALLED_REPUBLISH_MS,
} from './task-progress.reporter';

const MiB = 1024 * 1024;

describe('createTaskProgressReporter', () => {
  beforeEach(() => jest.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => jest.useRealTimers());

  function reporter() {
    const published: TaskProgress[] = [];
    let signs = 0;
    const instance = createTaskProgressReporter(
      (progress) => published.push(progress),
      () => signs++,
    );
    return { instance, published, signs: () => signs };
  }

  it('sends at most one progress per interval, the newest, with rates added', () => {
    const { instance, published, signs } = reporter();
    instance.report({ bytesDone: 0, bytesTotal: 100 * MiB });
    for (let step = 1; step <= 10; step++) {
      jest.advanceTimersByTime(100);
      instance.report({ bytesDone: step * MiB, bytesTotal: 100 * MiB });
    }
    jest.advanceTimersByTime(PROGRESS_INTERVAL_MS);
    expect(signs()).toBe(11);
    expect(published.map((progress) => progress.bytesDone)).toEqual([0, 4 * MiB, 9 * MiB, 10 * MiB]);
    expect(published.at(-1)?.bytesPerSecond).toBeGreaterThan(0);
    expect(instance.stop()?.bytesDone).toBe(10 * MiB);
  });

  it('sends a stalled task’s figures again, so its rate falls to zero and its ETA goes', () => {
    const { instance, published } = reporter();
    for (let step = 0; step <= 20; step++) {
      instance.report({ bytesDone: step * MiB, bytesTotal: 100 * MiB });
      jest.advanceTimersByTime(PROGRESS_INTERVAL_MS);
    }
    const moving = published.at(-1);
    expect(moving?.bytesPerSecond).toBeGreaterThan(0);
    expect(moving?.etaSeconds).toBeGreaterThan(0);
    const before = published.length;
    // Nothing reported for 20 s: the transfer stalled.
    jest.advanceTimersByTime(4 * STALLED_REPUBLISH_MS);
    expect(published.length).toBeGreaterThan(before);
    const stalled = published.at(-1);
    expect(stalled?.bytesDone).toBe(20 * MiB);
    expect(stalled?.bytesPerSecond).toBe(0);
    expect(stalled?.etaSeconds).toBeUndefined();
    instance.stop();
    const after = published.length;
    jest.advanceTimersByTime(4 * STALLED_REPUBLISH_MS);
    expect(published.length).toBe(after);
  });
});
