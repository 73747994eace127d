import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { Bus, BusSubscription } from '@haven/bus';
import { RUN_LOGS, type RunLogBatch } from '@haven/contracts';
import type { JsonLogger } from '@haven/observability';
import { HAVEN_BUS, HAVEN_LOGGER } from '@haven/service-core';

const LEVELS = new Set(['info', 'warn', 'error']);

/**
 * Stores the log lines workers publish, one INSERT per batch (catalog replicas share the queue
 * group, so each batch is written once). Lines of a run deleted meanwhile are dropped.
 */
@Injectable()
export class RunLogRecorder implements OnApplicationBootstrap, OnModuleDestroy {
  private subscription?: BusSubscription;

  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_BUS) private readonly bus: Bus,
    @Inject(HAVEN_LOGGER) private readonly logger: JsonLogger,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.subscription = this.bus.subscribe(RUN_LOGS, (batch) => this.record(batch), { queue: 'catalog' });
    await this.subscription.ready();
  }

  async onModuleDestroy(): Promise<void> {
    await this.subscription?.unsubscribe();
  }

  async record(batch: RunLogBatch): Promise<void> {
    const lines = batch.lines
      .filter((line) => LEVELS.has(line.level) && typeof line.message === 'string')
      .map((line) => ({
        task_id: line.taskId ?? null,
        at: line.at,
        level: line.level,
        message: line.message,
        fields: line.fields ?? {},
      }));
    if (lines.length === 0) return;
    try {
      // Only tasks of this run (and tenant) may be named: a line naming another is kept without it.
      await this.dataSource.query(
        `INSERT INTO run_logs (tenant_id, run_id, task_id, at, level, message, fields)
         SELECT r.tenant_id, r.id, t.id, (x.line->>'at')::timestamptz, x.line->>'level',
                x.line->>'message', x.line->'fields'
         FROM runs r
         CROSS JOIN jsonb_array_elements($3::jsonb) WITH ORDINALITY AS x(line, n)
         LEFT JOIN tasks t ON t.id = (x.line->>'task_id')::uuid AND t.run_id = r.id
         WHERE r.id = $1 AND r.tenant_id = $2
         ORDER BY x.n`,
        [batch.runId, batch.tenantId, JSON.stringify(lines)],
      );
    } catch (error) {
      this.logger.error(
        {
          msg: 'could not store run log lines',
          runId: batch.runId,
          lines: lines.length,
          error: String(error),
        },
        'RunLogRecorder',
      );
    }
  }
}
