import {
  formatBytes,
  formatDiskLines,
  formatDuration,
  formatTaskLine,
  PlainRunProgress,
  type TaskProgressEvent,
  TerminalRunProgress,
} from './run-progress.view';

const MiB = 1024 * 1024;

const copying: TaskProgressEvent = {
  taskId: 't1',
  status: 'running',
  progress: {
    step: 'disk xvda',
    bytesDone: 48 * MiB,
    bytesTotal: 96 * MiB,
    bytesPerSecond: 12.5 * MiB,
    etaSeconds: 75,
    disks: [
      { key: 'xvda', bytesDone: 32 * MiB, bytesTotal: 32 * MiB, bytesPerSecond: 8 * MiB, etaSeconds: 0 },
      { key: 'xvdb', bytesDone: 16 * MiB, bytesTotal: 64 * MiB, bytesPerSecond: 4.5 * MiB, etaSeconds: 11 },
    ],
  },
};

describe('formatting', () => {
  it('writes sizes in binary units and durations as m:ss or h:mm:ss', () => {
    expect([formatBytes(512), formatBytes(1536), formatBytes(3 * 1024 * MiB)]).toEqual([
      '512 B',
      '1.5 KiB',
      '3.0 GiB',
    ]);
    expect([formatDuration(0), formatDuration(75), formatDuration(3723)]).toEqual([
      '0:00',
      '1:15',
      '1:02:03',
    ]);
  });

  it("shows a task's bar, bytes, speed, ETA and step", () => {
    expect(formatTaskLine('web-01', copying)).toBe(
      `web-01                    running   [###############...............]  50%  48.0 MiB of 96.0 MiB  12.5 MiB/s  ETA 1:15  disk xvda`,
    );
  });

  it('shows each disk under its VM', () => {
    expect(formatDiskLines(copying)).toEqual([
      '    disk xvda  [##############################] 100%  32.0 MiB of 32.0 MiB  8.0 MiB/s  ETA 0:00',
      '    disk xvdb  [########......................]  25%  16.0 MiB of 64.0 MiB  4.5 MiB/s  ETA 0:11',
    ]);
  });

  it('leaves out what is not known yet: no bar without a total, no speed or ETA before a rate', () => {
    expect(
      formatTaskLine('web-01', { taskId: 't1', status: 'running', progress: { step: 'taking snapshot' } }),
    ).toBe('web-01                    running   taking snapshot');
    expect(
      formatTaskLine('web-01', {
        taskId: 't1',
        status: 'running',
        progress: { step: 'exporting', bytesDone: 2 * MiB },
      }),
    ).toBe('web-01                    running   2.0 MiB  exporting');
  });
});

describe('PlainRunProgress (not a terminal)', () => {
  /** A display on a clock the test moves; `printed()` is what it printed, runs of spaces squeezed. */
  function plainDisplay(subjectOf: (taskId: string) => string = (taskId) => taskId) {
    const lines: string[] = [];
    const clock = { now: 0 };
    const display = new PlainRunProgress(lines.push.bind(lines), subjectOf, () => clock.now, 3_000);
    return { display, clock, printed: () => lines.map((line) => line.replace(/ +/g, ' ')) };
  }

  it('prints a line per status change, and while running at most one per task per interval', () => {
    const { display, clock, printed } = plainDisplay((id) => `vm-${id}`);
    const running = (done: number, taskId = 't1'): TaskProgressEvent => ({
      taskId,
      status: 'running',
      progress: { bytesDone: done * MiB, bytesTotal: 10 * MiB, bytesPerSecond: MiB, etaSeconds: 10 - done },
    });
    display.progress(running(1));
    clock.now = 1_000;
    display.progress(running(2));
    display.progress(running(2, 't2'));
    clock.now = 3_000;
    display.progress(running(4));
    clock.now = 3_500;
    display.progress({
      taskId: 't1',
      status: 'success',
      progress: { bytesDone: 10 * MiB, bytesTotal: 10 * MiB },
    });
    expect(printed()).toEqual([
      'vm-t1 running [###...........................] 10% 1.0 MiB of 10.0 MiB 1.0 MiB/s ETA 0:09',
      'vm-t2 running [######........................] 20% 2.0 MiB of 10.0 MiB 1.0 MiB/s ETA 0:08',
      'vm-t1 running [############..................] 40% 4.0 MiB of 10.0 MiB 1.0 MiB/s ETA 0:06',
      'vm-t1 success [##############################] 100% 10.0 MiB of 10.0 MiB',
    ]);
  });

  it('prints a line at once when a total, a speed or an ETA becomes known', () => {
    const { display, clock, printed } = plainDisplay();
    display.progress({ taskId: 't1', status: 'running', progress: { step: 'starting' } });
    clock.now = 100;
    display.progress({ taskId: 't1', status: 'running', progress: { bytesDone: 0, bytesTotal: 10 * MiB } });
    clock.now = 200;
    display.progress({ taskId: 't1', status: 'running', progress: { bytesDone: MiB, bytesTotal: 10 * MiB } });
    clock.now = 600;
    const rated = { bytesDone: 2 * MiB, bytesTotal: 10 * MiB, bytesPerSecond: 2 * MiB, etaSeconds: 4 };
    display.progress({ taskId: 't1', status: 'running', progress: rated });
    clock.now = 700;
    display.progress({ taskId: 't1', status: 'running', progress: { ...rated, bytesDone: 3 * MiB } });
    expect(printed()).toEqual([
      't1 running starting',
      't1 running [..............................] 0% 0 B of 10.0 MiB',
      't1 running [######........................] 20% 2.0 MiB of 10.0 MiB 2.0 MiB/s ETA 0:04',
    ]);
  });

  it("prints the run's total over several tasks, as rarely", () => {
    const { display, clock, printed } = plainDisplay();
    display.transfer({ tasksCounted: 1, bytesDone: MiB, bytesTotal: 4 * MiB });
    display.transfer({
      tasksCounted: 2,
      bytesDone: 2 * MiB,
      bytesTotal: 8 * MiB,
      bytesPerSecond: MiB,
      etaSeconds: 6,
    });
    clock.now = 1_000;
    display.transfer({ tasksCounted: 2, bytesDone: 3 * MiB, bytesTotal: 8 * MiB });
    expect(printed()).toEqual([
      'run [########......................] 25% 2.0 MiB of 8.0 MiB 1.0 MiB/s ETA 0:06',
    ]);
  });
});

describe('TerminalRunProgress', () => {
  const terminal = (rows: number) => {
    const written: string[] = [];
    return {
      written,
      rows: () => rows,
      columns: () => 200,
      write: (text: string) => void written.push(text),
    };
  };

  it('draws the run, each VM and its disks when they fit, redrawing the block in place', () => {
    const screen = terminal(24);
    const display = new TerminalRunProgress(screen, () => 'web-01', 60_000);
    display.transfer({ tasksCounted: 2, bytesDone: 48 * MiB, bytesTotal: 96 * MiB });
    display.progress(copying);
    display.progress({ ...copying, taskId: 't2' });
    const wide = { subjectWidth: 6, barWidth: 30 };
    expect(display.lines()).toEqual([
      'run     [###############...............]  50%  48.0 MiB of 96.0 MiB',
      formatTaskLine('web-01', copying, wide),
      ...formatDiskLines(copying, wide),
      formatTaskLine('web-01', copying, wide),
      ...formatDiskLines(copying, wide),
    ]);
    display.close();
    display.logLine('  warning: slow remote');
    // The second drawing goes back over the first one's 7 lines before the log line.
    expect(screen.written[1]?.startsWith('\x1b[7F\x1b[J  warning: slow remote\n')).toBe(true);
    display.close();
  });

  it('drops the disk lines when the screen has no room for them', () => {
    const screen = terminal(4);
    const display = new TerminalRunProgress(screen, () => 'web-01', 60_000);
    display.progress(copying);
    display.progress({ ...copying, taskId: 't2' });
    expect(display.lines()).toEqual([
      formatTaskLine('web-01', copying, { subjectWidth: 6, barWidth: 30 }),
      formatTaskLine('web-01', copying, { subjectWidth: 6, barWidth: 30 }),
    ]);
    display.close();
  });

  it('keeps the block within the screen when there are more tasks than rows: running ones first, then a count', () => {
    const screen = terminal(5);
    const display = new TerminalRunProgress(screen, (taskId) => taskId, 60_000);
    for (const taskId of ['a', 'b', 'c', 'd', 'e'])
      display.progress({ ...copying, taskId, status: taskId === 'd' ? 'running' : 'pending' });
    const lines = display.lines();
    expect(lines).toHaveLength(3);
    expect(lines[0]?.startsWith('d ')).toBe(true);
    expect(lines[2]).toBe('… 3 more tasks');
    display.close();
  });

  it('narrows its bars on an 80-column screen so the speed and ETA stay in view', () => {
    const screen = { write: () => undefined, rows: () => 24, columns: () => 80 };
    const display = new TerminalRunProgress(screen, () => 'web-01', 60_000);
    display.progress(copying);
    expect(display.lines()[0]).toBe(
      'web-01  running   [#####.....]  50%  48.0 MiB of 96.0 MiB  12.5 MiB/s  ETA 1:15',
    );
    display.close();
  });
});
