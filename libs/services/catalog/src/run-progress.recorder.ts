import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { Bus, BusSubscription } from '@haven/bus';
import { RUN_PROGRESS, type RunProgressEvent } from '@haven/contracts';
import { RunEntity, TaskEntity } from '@haven/db';
import type { JsonLogger } from '@haven/observability';
import { HAVEN_BUS, HAVEN_LOGGER } from '@haven/service-core';

const TERMINAL = new Set(['success', 'partial', 'failure', 'cancelled']);

/**
 * Stores the progress workers publish. Catalog replicas share one queue group, so each event is
 * written once; a terminal state is never overwritten by a late, out-of-order progress event.
 */
@Injectable()
export class RunProgressRecorder implements OnApplicationBootstrap, OnModuleDestroy {
  private subscription?: BusSubscription;

  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_BUS) private readonly bus: Bus,
    @Inject(HAVEN_LOGGER) private readonly logger: JsonLogger,
  ) {}

  onApplicationBootstrap(): void {
    this.subscription = this.bus.subscribe(RUN_PROGRESS, (event) => this.record(event), { queue: 'catalog' });
  }

  async onModuleDestroy(): Promise<void> {
    await this.subscription?.unsubscribe();
  }

  async record(event: RunProgressEvent): Promise<void> {
    try {
      const at = new Date(event.at);
      const terminal = TERMINAL.has(event.status);
      const target = event.taskId === undefined ? RunEntity : TaskEntity;
      await this.dataSource
        .createQueryBuilder()
        .update(target)
        .set({
          status: event.status,
          progress: event.progress,
          ...(terminal ? { finishedAt: at } : {}),
          ...(event.status === 'failure' && event.message !== undefined ? { error: event.message } : {}),
        })
        .where('id = :id AND tenant_id = :tenantId', {
          id: event.taskId ?? event.runId,
          tenantId: event.tenantId,
        })
        .andWhere(`status NOT IN ('success', 'partial', 'failure', 'cancelled')`)
        .execute();
    } catch (error) {
      this.logger.error(
        {
          msg: 'could not record run progress',
          runId: event.runId,
          taskId: event.taskId,
          error: String(error),
        },
        'RunProgressRecorder',
      );
    }
  }
}
