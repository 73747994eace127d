import { SimulatorError } from '../xapi.failure';

export interface ClockState {
  /** The pool's current time (ISO 8601). */
  now: string;
  /** How far the pool's time is from the real one, in milliseconds (0: the real time). */
  offsetMs: number;
}

/**
 * The pool's time, as its snapshots record it (`snapshot_time`). Settable so that a test can run
 * a year of daily backups in minutes: once set, the pool's time runs on from the given instant at
 * the real pace; `set(null)` goes back to the real time. Not persisted: a restart is real time.
 */
export class SimulatorClock {
  private offsetMs = 0;

  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }

  set(at: Date | null): ClockState {
    if (at !== null && !Number.isFinite(at.getTime()))
      throw new SimulatorError(
        'SIM_BAD_REQUEST',
        'the clock needs a valid instant, e.g. "2025-01-01T02:30:00Z"',
      );
    this.offsetMs = at === null ? 0 : at.getTime() - Date.now();
    return this.state();
  }

  state(): ClockState {
    return { now: this.now().toISOString(), offsetMs: this.offsetMs };
  }
}
