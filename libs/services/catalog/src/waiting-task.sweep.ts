import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { Bus } from '@haven/bus';
import type { JsonLogger } from '@haven/observability';
import { HAVEN_BUS, HAVEN_LOGGER } from '@haven/service-core';
import { dispatchWaitingTasksNow } from './task.dispatcher';

/** How often running runs are checked for tasks waiting while their run has a free slot. */
export const WAITING_TASK_SWEEP_MS = 10_000;

/**
 * The safety net of per-run task concurrency: a task that ended while no catalog could queue the
 * next one (a crash between the two, a lost progress event) leaves tasks waiting with free slots;
 * this sweep queues them. Replicas may all sweep: the dispatch locks the run.
 */
@Injectable()
export class WaitingTaskSweep implements OnApplicationBootstrap, OnModuleDestroy {
  private timer?: NodeJS.Timeout;
  private sweeping?: Promise<void>;

  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_BUS) private readonly bus: Bus,
    @Inject(HAVEN_LOGGER) private readonly logger: JsonLogger,
  ) {}

  onApplicationBootstrap(): void {
    this.timer = setInterval(() => {
      this.sweeping ??= this.sweep()
        .then(() => undefined)
        .catch((error: unknown) =>
          this.logger.error({ msg: 'waiting task sweep failed', error: String(error) }, 'WaitingTaskSweep'),
        )
        .finally(() => (this.sweeping = undefined));
    }, WAITING_TASK_SWEEP_MS);
    this.timer.unref();
  }

  async onModuleDestroy(): Promise<void> {
    clearInterval(this.timer);
    await this.sweeping;
  }

  /** Queues what fits for every running run with waiting tasks; returns how many were queued. */
  async sweep(): Promise<number> {
    const runs: { id: string; tenant_id: string }[] = await this.dataSource.query(
      `SELECT r.id, r.tenant_id FROM runs r
       WHERE r.status = 'running'
         AND EXISTS (SELECT 1 FROM tasks t WHERE t.run_id = r.id AND t.queued_at IS NULL AND t.status = 'pending')`,
    );
    let queued = 0;
    for (const run of runs) {
      const ids = await dispatchWaitingTasksNow(this.dataSource, this.bus, run.tenant_id, run.id);
      if (ids.length > 0)
        this.logger.warn(
          { msg: 'queued tasks that waited with a free slot', runId: run.id, tasks: ids.length },
          'WaitingTaskSweep',
        );
      queued += ids.length;
    }
    return queued;
  }
}
