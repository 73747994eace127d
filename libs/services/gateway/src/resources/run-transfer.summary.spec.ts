import { runTransferOf } from './run-transfer.summary';

describe('runTransferOf', () => {
  it('sums the tasks that reported bytes, and their running rates, into an ETA', () => {
    expect(
      runTransferOf([
        { status: 'running', progress: { bytesDone: 100, bytesTotal: 400, bytesPerSecond: 50 } },
        { status: 'running', progress: { bytesDone: 300, bytesTotal: 600, bytesPerSecond: 150 } },
        { status: 'pending', progress: {} },
      ]),
    ).toEqual({ tasksCounted: 2, bytesDone: 400, bytesTotal: 1000, bytesPerSecond: 200, etaSeconds: 3 });
  });

  it("leaves a finished task's last rate out of the run's speed", () => {
    expect(
      runTransferOf([
        { status: 'success', progress: { bytesDone: 500, bytesTotal: 500, bytesPerSecond: 1000 } },
        { status: 'running', progress: { bytesDone: 100, bytesTotal: 500, bytesPerSecond: 100 } },
      ]),
    ).toEqual({ tasksCounted: 2, bytesDone: 600, bytesTotal: 1000, bytesPerSecond: 100, etaSeconds: 4 });
  });

  it('counts a failed task as done with what it moved, so the ETA does not wait for it', () => {
    expect(
      runTransferOf([
        { status: 'failure', progress: { bytesDone: 10, bytesTotal: 500, bytesPerSecond: 5 } },
        { status: 'success', progress: { bytesDone: 90, bytesTotal: 90 } },
      ]),
    ).toEqual({ tasksCounted: 2, bytesDone: 100, bytesTotal: 100, etaSeconds: 0 });
  });

  it('has no total and no ETA when a counted task does not know its total', () => {
    expect(
      runTransferOf([
        { status: 'running', progress: { bytesDone: 100, bytesPerSecond: 50 } },
        { status: 'running', progress: { bytesDone: 100, bytesTotal: 200, bytesPerSecond: 50 } },
      ]),
    ).toEqual({ tasksCounted: 2, bytesDone: 200, bytesPerSecond: 100 });
  });

  it('has no rate and no ETA before any running task has a rate', () => {
    expect(runTransferOf([{ status: 'running', progress: { bytesDone: 0, bytesTotal: 200 } }])).toEqual({
      tasksCounted: 1,
      bytesDone: 0,
      bytesTotal: 200,
    });
  });

  it('is zero bytes over no task when none reported bytes (steps only, or nothing yet)', () => {
    expect(runTransferOf([{ status: 'running', progress: { step: 'taking snapshot' } }])).toEqual({
      tasksCounted: 0,
      bytesDone: 0,
    });
    expect(runTransferOf([])).toEqual({ tasksCounted: 0, bytesDone: 0 });
  });

  it('ignores figures that are not byte counts', () => {
    expect(runTransferOf([{ status: 'running', progress: { bytesDone: 'lots', bytesTotal: -1 } }])).toEqual({
      tasksCounted: 0,
      bytesDone: 0,
    });
  });
});
