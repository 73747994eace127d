import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { Bus } from '@haven/bus';
import {
  REPOSITORY_GC_TASK,
  REPOSITORY_VERIFY_TASK,
  START_MAINTENANCE,
  type StartMaintenanceRequest,
  type StartRunReply,
} from '@haven/contracts';
import { RemoteEntity } from '@haven/db';
import type { JsonLogger } from '@haven/observability';
import { HAVEN_BUS, HAVEN_LOGGER } from '@haven/service-core';
import { BusResponder } from './bus.responder';
import { launchSingleTaskRun } from './single-task.run';

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
export class MaintenanceLauncher extends BusResponder<StartMaintenanceRequest, StartRunReply> {
  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_BUS) bus: Bus,
    @Inject(HAVEN_LOGGER) private readonly logger: JsonLogger,
  ) {
    super(bus, START_MAINTENANCE);
  }

  async start(request: StartMaintenanceRequest): Promise<StartRunReply> {
    const remote = await this.dataSource
      .getRepository(RemoteEntity)
      .findOneBy({ id: request.remoteId, tenantId: request.tenantId });
    if (!remote)
      throw new MaintenanceStartError('REMOTE_NOT_FOUND', `Remote ${request.remoteId} does not exist`);

    const runId = await launchSingleTaskRun(this.dataSource, this.bus, {
      tenantId: request.tenantId,
      kind: request.kind,
      trigger: request.trigger,
      progress: { remoteId: remote.id, ...(request.note === undefined ? {} : { note: request.note }) },
      task: {
        type: request.kind === 'gc' ? REPOSITORY_GC_TASK : REPOSITORY_VERIFY_TASK,
        subject: `remote ${remote.name}`,
        input: {
          remoteId: remote.id,
          ...(request.safetyWindowMs === undefined ? {} : { safetyWindowMs: request.safetyWindowMs }),
          ...(request.sample === undefined ? {} : { sample: request.sample }),
        },
      },
    });
    this.logger.log(
      { msg: `${request.kind} started`, runId, remoteId: remote.id, note: request.note },
      'MaintenanceLauncher',
    );
    return { runId, tasks: 1 };
  }
}
