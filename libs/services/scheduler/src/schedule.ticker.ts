import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { Cron } from 'croner';
import { DataSource } from 'typeorm';
import type { JsonLogger } from '@haven/observability';
import { HAVEN_LOGGER } from '@haven/service-core';
import { RunLauncher } from './run.launcher';

const TICK_MS = 5_000;
/** Ticks counted when telling how many a stopped scheduler missed; beyond this: "more than". */
const MISSED_COUNT_LIMIT = 1_000;

export interface ClaimedSchedule {
  id: string;
  tenantId: string;
  jobId: string;
  dueAt: Date;
  /** Earlier ticks that passed while no scheduler ran (they are reported, not replayed). */
  missedTicks: number;
}

/** Occurrences of `cron` after `from` and up to `until`. */
function countTicks(cron: Cron, from: Date, until: Date): number {
  let count = 0;
  let cursor: Date | null = from;
  while (count < MISSED_COUNT_LIMIT) {
    cursor = cron.nextRun(cursor);
    if (cursor === null || cursor > until) break;
    count++;
  }
  return count;
}

/**
 * Fires due schedules. Several schedulers may run: each due schedule row is claimed under
 * `FOR UPDATE SKIP LOCKED` and moved to its next tick in the same transaction, so a tick fires
 * exactly once whichever scheduler sees it first. Ticks missed while no scheduler ran are counted
 * and written into the run, not silently lost and not replayed one by one. The runs claimed are
 * started side by side, and the next tick does not wait for them: a start whose planning is
 * retried (up to a minute, a pool that does not answer) delays no other schedule.
 */
@Injectable()
export class ScheduleTicker implements OnApplicationBootstrap, OnModuleDestroy {
  private timer?: NodeJS.Timeout;
  /** The claiming of due schedules under way (one at a time per scheduler). */
  private claiming?: Promise<void>;
  /** Runs being started (planned), not yet listed or refused. */
  private readonly starting = new Set<Promise<void>>();

  constructor(
    private readonly dataSource: DataSource,
    private readonly launcher: RunLauncher,
    @Inject(HAVEN_LOGGER) private readonly logger: JsonLogger,
  ) {}

  onApplicationBootstrap(): void {
    this.timer = setInterval(() => {
      this.claiming ??= this.fireDue()
        .then(() => undefined)
        .catch((error: unknown) =>
          this.logger.error({ msg: 'schedule tick failed', error: String(error) }, 'ScheduleTicker'),
        )
        .finally(() => (this.claiming = undefined));
    }, TICK_MS);
  }

  /** Stops ticking and waits for the starts under way (the launcher aborts their plannings). */
  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    await this.claiming;
    await this.startsSettled();
  }

  /** Fires every schedule due at `now` and waits until each run is started or refused. */
  async tick(now = new Date()): Promise<ClaimedSchedule[]> {
    const starts: Promise<void>[] = [];
    try {
      return await this.claimDue(now, (started) => starts.push(started));
    } finally {
      await Promise.all(starts);
    }
  }

  /**
   * Claims every schedule due at `now` and starts their runs side by side, without waiting for
   * them (what the timer does each tick); returns what it claimed.
   */
  async fireDue(now = new Date()): Promise<ClaimedSchedule[]> {
    return this.claimDue(now, (started) => {
      const tracked = started.finally(() => this.starting.delete(tracked));
      this.starting.add(tracked);
    });
  }

  /** Resolves once every run started by fireDue so far is started or refused. */
  async startsSettled(): Promise<void> {
    while (this.starting.size > 0) await Promise.all(this.starting);
  }

  /**
   * Claims the due schedules one at a time, then starts their runs (a start's catalog writes never
   * run inside a claim's transaction); a claim that fails (the catalog went away) still starts the
   * runs claimed before it, whose ticks are taken.
   */
  private async claimDue(now: Date, started: (start: Promise<void>) => void): Promise<ClaimedSchedule[]> {
    const fired: ClaimedSchedule[] = [];
    try {
      for (;;) {
        const claimed = await this.claimNext(now);
        if (!claimed) return fired;
        fired.push(claimed);
      }
    } finally {
      for (const claimed of fired) started(this.start(claimed));
    }
  }

  /** Starts a claimed schedule's run; never rejects (a refusal is logged, and listed as a run). */
  private async start(claimed: ClaimedSchedule): Promise<void> {
    const note =
      claimed.missedTicks > 0
        ? `${claimed.missedTicks}${claimed.missedTicks >= MISSED_COUNT_LIMIT ? '+' : ''} earlier tick(s) were missed while no scheduler ran`
        : undefined;
    if (note !== undefined)
      this.logger.warn({ msg: note, scheduleId: claimed.id, jobId: claimed.jobId }, 'ScheduleTicker');
    try {
      await this.launcher.start({
        tenantId: claimed.tenantId,
        jobId: claimed.jobId,
        trigger: 'schedule',
        scheduleId: claimed.id,
        note,
      });
    } catch (error) {
      this.logger.warn(
        {
          msg: 'scheduled run not started',
          scheduleId: claimed.id,
          jobId: claimed.jobId,
          reason: error instanceof Error ? error.message : String(error),
        },
        'ScheduleTicker',
      );
    }
  }

  /** Claims one due schedule and moves it to its next tick, atomically. */
  async claimNext(now: Date): Promise<ClaimedSchedule | undefined> {
    return this.dataSource.transaction(async (tx) => {
      const rows: {
        id: string;
        tenant_id: string;
        job_id: string;
        cron: string;
        timezone: string;
        next_fire_at: Date;
      }[] = await tx.query(
        `SELECT id, tenant_id, job_id, cron, timezone, next_fire_at FROM schedules
         WHERE enabled AND next_fire_at <= $1 ORDER BY next_fire_at LIMIT 1 FOR UPDATE SKIP LOCKED`,
        [now],
      );
      const row = rows.at(0);
      if (!row) return undefined;
      const cron = new Cron(row.cron, { paused: true, timezone: row.timezone });
      const dueAt = new Date(row.next_fire_at);
      const missedTicks = countTicks(cron, dueAt, now);
      const next = cron.nextRun(now);
      cron.stop();
      await tx.query(`UPDATE schedules SET last_fired_at = $2, next_fire_at = $3 WHERE id = $1`, [
        row.id,
        dueAt,
        next,
      ]);
      return { id: row.id, tenantId: row.tenant_id, jobId: row.job_id, dueAt, missedTicks };
    });
  }
}
