import { randomUUID } from 'node:crypto';
import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { Bus, BusSubscription } from '@haven/bus';
import {
  REPOSITORY_GC_TASK,
  REPOSITORY_VERIFY_TASK,
  RUN_PROGRESS,
  START_MAINTENANCE,
  type StartMaintenanceRequest,
  type StartRunReply,
} from '@haven/contracts';
import { RemoteEntity, RunEntity, TaskEntity } from '@haven/db';
import type { JsonLogger } from '@haven/observability';
import { HAVEN_BUS, HAVEN_LOGGER } from '@haven/service-core';
import { dispatchWaitingTasksNow } from '@haven/service-catalog';

/** A maintenance run that cannot start: the requester gets this code and message. */
export class MaintenanceStartError extends Error {
  constructor(
    readonly code: 'REMOTE_NOT_FOUND',
    message: string,
  ) {
    super(message);
    this.name = 'MaintenanceStartError';
  }
}

/**
 * Turns "collect garbage on / verify this remote" into a run (kind gc or verify, no job) of one
 * task, queued like job tasks so any transfer worker takes it and it survives a worker restart.
 */
@Injectable()
export class MaintenanceLauncher implements OnApplicationBootstrap, OnModuleDestroy {
  private subscription?: BusSubscription;

  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_BUS) private readonly bus: Bus,
    @Inject(HAVEN_LOGGER) private readonly logger: JsonLogger,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.subscription = this.bus.respond(START_MAINTENANCE, (request) => this.start(request));
    await this.subscription.ready();
  }

  async onModuleDestroy(): Promise<void> {
    await this.subscription?.unsubscribe();
  }

  async start(request: StartMaintenanceRequest): Promise<StartRunReply> {
    const remote = await this.dataSource
      .getRepository(RemoteEntity)
      .findOneBy({ id: request.remoteId, tenantId: request.tenantId });
    if (!remote)
      throw new MaintenanceStartError('REMOTE_NOT_FOUND', `Remote ${request.remoteId} does not exist`);

    const runId = randomUUID();
    const taskId = randomUUID();
    const now = new Date();
    const input: Record<string, unknown> = {
      remoteId: remote.id,
      ...(request.safetyWindowMs === undefined ? {} : { safetyWindowMs: request.safetyWindowMs }),
      ...(request.sample === undefined ? {} : { sample: request.sample }),
    };
    await this.dataSource.transaction(async (tx) => {
      await tx.getRepository(RunEntity).insert({
        id: runId,
        tenantId: request.tenantId,
        jobId: null,
        kind: request.kind,
        scheduleId: null,
        trigger: request.trigger,
        status: 'running',
        progress: {
          tasks: 1,
          remoteId: remote.id,
          ...(request.note === undefined ? {} : { note: request.note }),
        },
        error: null,
        taskConcurrency: null,
        startedAt: now,
        finishedAt: null,
      });
      const taskRows = tx.getRepository(TaskEntity);
      const task = taskRows.create({
        id: taskId,
        tenantId: request.tenantId,
        runId,
        type: request.kind === 'gc' ? REPOSITORY_GC_TASK : REPOSITORY_VERIFY_TASK,
        subject: `remote ${remote.name}`,
        status: 'pending',
        input,
        progress: {},
        attempts: 0,
        worker: null,
        result: null,
        error: null,
        queuedAt: null,
        startedAt: null,
        finishedAt: null,
      });
      await taskRows.save(task, { reload: false });
    });
    await dispatchWaitingTasksNow(this.dataSource, this.bus, request.tenantId, runId);
    await this.bus.publish(RUN_PROGRESS, {
      tenantId: request.tenantId,
      runId,
      status: 'running',
      progress: { tasks: 1 },
      at: now.toISOString(),
    });
    this.logger.log(
      { msg: `${request.kind} started`, runId, remoteId: remote.id, note: request.note },
      'MaintenanceLauncher',
    );
    return { runId, tasks: 1 };
  }
}
