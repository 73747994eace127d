import { SimulatorError } from '../xapi.failure';

export interface ClockState {
  /** The pool's current time (ISO 8601). */
  now: string;
  /** How far the pool's time is from the real one, in milliseconds (0: the real time). */
  offsetMs: number;
  /** True while the pool's time stands still at `now`. */
  frozen: boolean;
}

/**
 * The pool's time, as its snapshots record it (`snapshot_time`). Settable so that a test can run
 * a year of daily backups in minutes: once set, the pool's time runs on from the given instant at
 * the real pace, or stands still there when `frozen` (every snapshot then records the same
 * second, as two quick snapshots on a real host can); `set(null)` goes back to the real time.
 * Not persisted: a restart is real time.
 */
export class SimulatorClock {
  private offsetMs = 0;
  private frozenAt: Date | undefined;

  now(): Date {
    return new Date(this.frozenAt?.getTime() ?? Date.now() + this.offsetMs);
  }

  set(at: Date | null, options: { frozen?: boolean } = {}): ClockState {
    if (at !== null && !Number.isFinite(at.getTime()))
      throw new SimulatorError(
        'SIM_BAD_REQUEST',
        'the clock needs a valid instant, e.g. "2025-01-01T02:30:00Z"',
      );
    this.offsetMs = at === null ? 0 : at.getTime() - Date.now();
    this.frozenAt = at !== null && options.frozen === true ? new Date(at) : undefined;
    return this.state();
  }

  state(): ClockState {
    return { now: this.now().toISOString(), offsetMs: this.offsetMs, frozen: this.frozenAt !== undefined };
  }
}
