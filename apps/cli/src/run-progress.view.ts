import { progressBar } from './table.format';

/** A disk's figures as a task's progress carries them (docs/run-progress.md). */
export interface DiskProgressView {
  key: string;
  name?: string;
  bytesDone?: number;
  bytesTotal?: number;
  bytesPerSecond?: number;
  etaSeconds?: number;
}

export interface TaskProgressView {
  step?: string;
  bytesDone?: number;
  bytesTotal?: number;
  bytesPerSecond?: number;
  etaSeconds?: number;
  disks?: DiskProgressView[];
}

/** A `progress` event of one task, from GET /runs/:id/events. */
export interface TaskProgressEvent {
  taskId: string;
  status: string;
  progress: TaskProgressView;
  message?: string;
}

/** A `transfer` event: the run's bytes summed over its tasks. */
export interface RunTransferEvent {
  tasksCounted: number;
  bytesDone: number;
  bytesTotal?: number;
  bytesPerSecond?: number;
  etaSeconds?: number;
}

const KiB = 1024;
const MiB = KiB * KiB;
const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1536 → "1.5 KiB"; whole bytes below 1 KiB. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

/** 42 → "0:42", 3723 → "1:02:03". */
export function formatDuration(seconds: number): string {
  const whole = Math.max(0, Math.round(seconds));
  const s = whole % 60;
  const m = Math.floor(whole / 60) % 60;
  const h = Math.floor(whole / 3600);
  const two = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
}

/** How wide the columns are: the defaults suit plain lines; a terminal narrows them to fit. */
export interface LineLayout {
  subjectWidth: number;
  barWidth: number;
}

const PLAIN_LAYOUT: LineLayout = { subjectWidth: 24, barWidth: 30 };

/** Bar, bytes done of total, speed and ETA; each part only when known. */
function transferText(
  figures: {
    bytesDone?: number;
    bytesTotal?: number;
    bytesPerSecond?: number;
    etaSeconds?: number;
  },
  barWidth: number,
): string {
  const { bytesDone, bytesTotal, bytesPerSecond, etaSeconds } = figures;
  const parts: string[] = [];
  if (bytesTotal !== undefined && bytesTotal > 0) {
    parts.push(progressBar(bytesDone ?? 0, bytesTotal, barWidth));
    parts.push(`${formatBytes(bytesDone ?? 0)} of ${formatBytes(bytesTotal)}`);
  } else if (bytesDone !== undefined) parts.push(formatBytes(bytesDone));
  if (bytesPerSecond !== undefined) parts.push(`${(bytesPerSecond / MiB).toFixed(1)} MiB/s`);
  if (etaSeconds !== undefined) parts.push(`ETA ${formatDuration(etaSeconds)}`);
  return parts.join('  ');
}

/** Which of the total, rate and ETA a progress carries, as a short key. */
function figuresKnown(progress: TaskProgressView): string {
  return [progress.bytesTotal, progress.bytesPerSecond, progress.etaSeconds]
    .map((value) => (value === undefined ? '-' : '+'))
    .join('');
}

/** One task (a backup task: one VM): `subject  status  [bar] pct  done of total  MiB/s  ETA  step`. */
export function formatTaskLine(
  subject: string,
  event: TaskProgressEvent,
  layout: LineLayout = PLAIN_LAYOUT,
): string {
  const { step = '' } = event.progress;
  return [
    subject.padEnd(layout.subjectWidth),
    event.status.padEnd(8),
    transferText(event.progress, layout.barWidth),
    step,
    event.message ?? '',
  ]
    .filter((part) => part.trim() !== '')
    .join('  ')
    .trimEnd();
}

/** The task's disks, one line each, indented under it. */
export function formatDiskLines(event: TaskProgressEvent, layout: LineLayout = PLAIN_LAYOUT): string[] {
  const disks = event.progress.disks ?? [];
  const width = Math.max(0, ...disks.map((disk) => disk.key.length));
  return disks.map((disk) =>
    `    disk ${disk.key.padEnd(width)}  ${transferText(disk, layout.barWidth)}`.trimEnd(),
  );
}

export function formatRunLine(transfer: RunTransferEvent, layout: LineLayout = PLAIN_LAYOUT): string {
  return `${'run'.padEnd(layout.subjectWidth)}  ${transferText(transfer, layout.barWidth)}`.trimEnd();
}

/**
 * What `--follow` shows of a run's progress; `logLine` prints a line above it (warnings, errors),
 * `close` leaves the last state on screen.
 */
export interface RunProgressDisplay {
  progress(event: TaskProgressEvent): void;
  transfer(event: RunTransferEvent): void;
  logLine(text: string): void;
  close(): void;
}

/**
 * Without a terminal (a pipe, a log file, a test): plain lines, one per task when its status changes
 * and otherwise at most one per task every `intervalMs`, and the run's total as often.
 */
export class PlainRunProgress implements RunProgressDisplay {
  private readonly printed = new Map<string, { atMs: number; status: string; figures: string }>();
  private runPrintedAtMs: number | undefined;

  constructor(
    private readonly out: (text: string) => void,
    private readonly subjectOf: (taskId: string) => string,
    private readonly now: () => number = Date.now,
    private readonly intervalMs = 3_000,
  ) {}

  progress(event: TaskProgressEvent): void {
    const atMs = this.now();
    const last = this.printed.get(event.taskId);
    // A figure known for the first time (a total, a speed, an ETA) is worth a line at once too.
    const figures = figuresKnown(event.progress);
    if (
      last !== undefined &&
      last.status === event.status &&
      last.figures === figures &&
      atMs - last.atMs < this.intervalMs
    )
      return;
    this.printed.set(event.taskId, { atMs, status: event.status, figures });
    this.out(formatTaskLine(this.subjectOf(event.taskId), event));
  }

  transfer(event: RunTransferEvent): void {
    // The run's line adds something only over several tasks, and only once they moved bytes.
    if (event.tasksCounted < 2) return;
    const atMs = this.now();
    if (this.runPrintedAtMs !== undefined && atMs - this.runPrintedAtMs < this.intervalMs) return;
    this.runPrintedAtMs = atMs;
    this.out(formatRunLine(event));
  }

  logLine(text: string): void {
    this.out(text);
  }

  close(): void {
    // Every line is already out.
  }
}

/** The terminal `--follow` draws on: what it writes goes out as is (escape sequences included). */
export interface ProgressTerminal {
  write(text: string): void;
  rows(): number;
  columns(): number;
}

/**
 * On a terminal: a block redrawn in place, the run's total then one bar per task (per VM) and, when
 * the screen has room, its disks under it. Redrawn at most every `redrawMs`.
 */
export class TerminalRunProgress implements RunProgressDisplay {
  private readonly tasks = new Map<string, TaskProgressEvent>();
  private run: RunTransferEvent | undefined;
  private drawnLines = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly terminal: ProgressTerminal,
    private readonly subjectOf: (taskId: string) => string,
    private readonly redrawMs = 200,
  ) {}

  progress(event: TaskProgressEvent): void {
    this.tasks.set(event.taskId, event);
    this.schedule();
  }

  transfer(event: RunTransferEvent): void {
    this.run = event;
    this.schedule();
  }

  logLine(text: string): void {
    this.terminal.write(`${this.erase()}${text}\n`);
    this.drawnLines = 0;
    this.draw();
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.draw();
  }

  /**
   * The block's lines: disks included only when all of them fit on the screen; names padded to the
   * longest and bars narrowed on a narrow screen, so the speed and ETA stay in view.
   */
  lines(): string[] {
    const tasks = [...this.tasks.values()];
    const columns = this.terminal.columns();
    const layout: LineLayout = {
      subjectWidth: Math.min(24, Math.max(3, ...tasks.map((event) => this.subjectOf(event.taskId).length))),
      barWidth: columns >= 130 ? 30 : columns >= 100 ? 20 : 10,
    };
    const head = this.run !== undefined && this.run.tasksCounted > 1 ? [formatRunLine(this.run, layout)] : [];
    const taskLines = tasks.map((event) => formatTaskLine(this.subjectOf(event.taskId), event, layout));
    const withDisks = tasks.flatMap((event, index) => [
      taskLines[index] ?? '',
      ...formatDiskLines(event, layout),
    ]);
    const room = Math.max(2, this.terminal.rows() - 2);
    let body = head.length + withDisks.length <= room ? withDisks : taskLines;
    // More tasks than rows: the block could not be redrawn in place (the cursor cannot climb above
    // the screen); running tasks first, then a count of the rest.
    if (head.length + body.length > room) {
      const order = tasks
        .map((event, index) => ({ running: event.status === 'running', line: taskLines[index] ?? '' }))
        .sort((a, b) => Number(b.running) - Number(a.running));
      const shown = Math.max(1, room - head.length - 1);
      body = [...order.slice(0, shown).map((entry) => entry.line), `… ${order.length - shown} more tasks`];
    }
    return [...head, ...body].map((line) => line.slice(0, Math.max(20, columns - 1)));
  }

  private schedule(): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.draw();
    }, this.redrawMs);
  }

  /** Moves back to the block's first line and clears from there down. */
  private erase(): string {
    return this.drawnLines > 0 ? `\x1b[${this.drawnLines}F\x1b[J` : '';
  }

  private draw(): void {
    const lines = this.lines();
    this.terminal.write(`${this.erase()}${lines.map((line) => `${line}\n`).join('')}`);
    this.drawnLines = lines.length;
  }
}
