import type { Bus } from '@haven/bus';
import { RUN_LOGS, type RunLogLine } from '@haven/contracts';

/** Lines one attempt of a task may store; beyond, they are counted and reported as dropped. */
export const RUN_LOG_LINES_PER_TASK = 2_000;
/** A batch goes out when it holds this many lines, or this long after its first line. */
const BATCH_LINES = 100;
const BATCH_DELAY_MS = 250;
/** Bounds of one line, so a batch stays far under the bus's payload limit. */
const MAX_MESSAGE_CHARS = 2_000;
const MAX_FIELDS_CHARS = 4_000;

/**
 * Collects the log lines of one task attempt and publishes them in batches for the catalog to
 * store (and SSE followers to see). Bounded: after `limit` lines the rest are only counted, and
 * `close()` adds one line saying how many were dropped.
 */
export class RunLogWriter {
  private batch: RunLogLine[] = [];
  private timer?: NodeJS.Timeout;
  private written = 0;
  private dropped = 0;
  private sending: Promise<void> = Promise.resolve();

  constructor(
    private readonly bus: Bus,
    private readonly target: { tenantId: string; runId: string; taskId: string },
    private readonly limit = RUN_LOG_LINES_PER_TASK,
  ) {}

  line(level: RunLogLine['level'], message: string, fields?: Record<string, unknown>): void {
    if (this.written >= this.limit) {
      this.dropped++;
      return;
    }
    this.written++;
    this.push(level, message, fields);
  }

  /** Sends what is pending (and the dropped-lines line); resolves once it is published. */
  async close(): Promise<void> {
    if (this.dropped > 0)
      this.push('warn', `${this.dropped} more log line(s) dropped: a task keeps at most ${this.limit}`, {
        dropped: this.dropped,
      });
    this.dropped = 0;
    this.flush();
    await this.sending;
  }

  private push(level: RunLogLine['level'], message: string, fields?: Record<string, unknown>): void {
    this.batch.push({
      taskId: this.target.taskId,
      at: new Date().toISOString(),
      level,
      message: message.length > MAX_MESSAGE_CHARS ? `${message.slice(0, MAX_MESSAGE_CHARS)}…` : message,
      ...(fields === undefined || Object.keys(fields).length === 0 ? {} : { fields: boundedFields(fields) }),
    });
    if (this.batch.length >= BATCH_LINES) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), BATCH_DELAY_MS);
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.batch.length === 0) return;
    const lines = this.batch;
    this.batch = [];
    // One publish at a time, in order; a lost batch is not worth failing the task for.
    this.sending = this.sending.then(() =>
      this.bus
        .publish(RUN_LOGS, { tenantId: this.target.tenantId, runId: this.target.runId, lines })
        .catch(() => undefined),
    );
  }
}

/** Fields as JSON-safe values, replaced by a note when they are too big to store with a line. */
function boundedFields(fields: Record<string, unknown>): Record<string, unknown> {
  let text: string;
  try {
    text = JSON.stringify(fields, (_key, value: unknown) =>
      value instanceof Error ? { name: value.name, message: value.message } : value,
    );
  } catch {
    return { unserializable: true };
  }
  if (text.length > MAX_FIELDS_CHARS) return { truncated: true, size: text.length };
  return JSON.parse(text) as Record<string, unknown>;
}
