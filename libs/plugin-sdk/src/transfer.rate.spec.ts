import { secondsLeft, TaskProgressRates, TransferRateWindow } from './transfer.rate';

const MiB = 1024 * 1024;

describe('TransferRateWindow', () => {
  it('knows no rate from a single sample or two taken at the same instant', () => {
    const window = new TransferRateWindow();
    expect(window.observe(0, 1_000)).toBeUndefined();
    expect(window.observe(5 * MiB, 1_000)).toBeUndefined();
  });

  it('gives bytes per second between its oldest and newest samples', () => {
    const window = new TransferRateWindow();
    window.observe(0, 0);
    window.observe(4 * MiB, 1_000);
    expect(window.observe(8 * MiB, 2_000)).toBe(4 * MiB);
  });

  it('forgets what is older than its window: a slow start does not drag the rate down later', () => {
    const window = new TransferRateWindow(10_000);
    // 1 MiB/s for 20 s, then 8 MiB/s for 20 s: the rate is the recent one, not the average.
    let bytes = 0;
    for (let t = 0; t <= 20_000; t += 500) window.observe((bytes = (t / 1000) * MiB), t);
    let rate: number | undefined;
    for (let t = 20_500; t <= 40_000; t += 500) rate = window.observe((bytes += 4 * MiB), t);
    expect(rate).toBe(8 * MiB);
  });

  it('smooths a burst over the window', () => {
    const window = new TransferRateWindow(10_000);
    for (let t = 0; t <= 10_000; t += 1_000) window.observe((t / 1000) * MiB, t);
    // One second moving 11 MiB, after ten at 1 MiB/s: the rate rises, far below the burst's 11 MiB/s.
    const rate = window.observe(21 * MiB, 11_000) ?? 0;
    expect(rate).toBeGreaterThan(1 * MiB);
    expect(rate).toBeLessThan(11 * MiB);
  });

  it('starts over when bytes go down (a new attempt) instead of showing a negative rate', () => {
    const window = new TransferRateWindow();
    window.observe(0, 0);
    window.observe(10 * MiB, 1_000);
    expect(window.observe(1 * MiB, 2_000)).toBeUndefined();
    expect(window.observe(3 * MiB, 3_000)).toBe(2 * MiB);
  });

  it('holds a bounded number of samples however often it is fed', () => {
    const window = new TransferRateWindow(10_000);
    for (let t = 0; t <= 60_000; t += 1) window.observe(t, t);
    expect((window as unknown as { samples: unknown[] }).samples.length).toBeLessThanOrEqual(45);
    expect(window.rate()).toBe(1000);
  });
});

describe('secondsLeft', () => {
  it('is the bytes left over the rate, rounded up', () => {
    expect(secondsLeft(10, 110, 30)).toBe(4);
  });

  it('is 0 once everything is done, whatever the rate', () => {
    expect(secondsLeft(100, 100, undefined)).toBe(0);
    expect(secondsLeft(120, 100, 0)).toBe(0);
  });

  it('is unknown without a total, without a rate, or at a zero rate (no division by zero)', () => {
    expect(secondsLeft(10, undefined, 5)).toBeUndefined();
    expect(secondsLeft(10, 0, 5)).toBeUndefined();
    expect(secondsLeft(10, 100, undefined)).toBeUndefined();
    expect(secondsLeft(10, 100, 0)).toBeUndefined();
    expect(secondsLeft(undefined, 100, 5)).toBeUndefined();
  });
});

describe('TaskProgressRates', () => {
  it('adds the rate and ETA to the task and to each of its disks', () => {
    const rates = new TaskProgressRates();
    const report = (xvda: number, xvdb: number) => ({
      step: 'disk xvda',
      bytesDone: xvda + xvdb,
      bytesTotal: 20 * MiB,
      disks: [
        { key: 'xvda', bytesDone: xvda, bytesTotal: 10 * MiB },
        { key: 'xvdb', bytesDone: xvdb, bytesTotal: 10 * MiB },
      ],
    });
    const first = rates.decorate(report(0, 0), 0);
    expect(first).not.toHaveProperty('bytesPerSecond');
    expect(first).not.toHaveProperty('etaSeconds');
    expect(first.disks?.[0]).not.toHaveProperty('etaSeconds');
    const later = rates.decorate(report(2 * MiB, 1 * MiB), 1_000);
    expect(later).toMatchObject({ bytesDone: 3 * MiB, bytesPerSecond: 3 * MiB, etaSeconds: 6 });
    expect(later.disks).toEqual([
      { key: 'xvda', bytesDone: 2 * MiB, bytesTotal: 10 * MiB, bytesPerSecond: 2 * MiB, etaSeconds: 4 },
      { key: 'xvdb', bytesDone: 1 * MiB, bytesTotal: 10 * MiB, bytesPerSecond: 1 * MiB, etaSeconds: 9 },
    ]);
  });

  it('leaves steps without bytes as they are, and ignores figures an executor set itself', () => {
    const rates = new TaskProgressRates();
    expect(rates.decorate({ step: 'taking snapshot', etaSeconds: 3 }, 0)).toEqual({
      step: 'taking snapshot',
    });
  });

  it('gives a stalled task a zero rate and no ETA', () => {
    const rates = new TaskProgressRates();
    rates.decorate({ bytesDone: 5, bytesTotal: 10 }, 0);
    expect(rates.decorate({ bytesDone: 5, bytesTotal: 10 }, 2_000)).toEqual({
      bytesDone: 5,
      bytesTotal: 10,
      bytesPerSecond: 0,
    });
  });
});
