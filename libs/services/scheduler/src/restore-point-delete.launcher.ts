import { Inject, Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';
import type { Bus } from '@haven/bus';
import {
  DELETE_RESTORE_POINT,
  type DeleteRestorePointRequest,
  RESTORE_POINT_DELETE_TASK,
  type StartRunReply,
} from '@haven/contracts';
import { RemoteEntity, RestorePointEntity } from '@haven/db';
import type { JsonLogger } from '@haven/observability';
import { HAVEN_BUS, HAVEN_LOGGER } from '@haven/service-core';
import { RESTORE_VM_TASK } from './restore.launcher';
import { lockRestorePoint, openTasksOf } from './restore-point.lock';
import { BusResponder } from './bus.responder';
import { launchSingleTaskRun } from './single-task.run';

/** A deletion that cannot start: the requester gets this code and message. */
export class RestorePointDeleteError extends Error {
  constructor(
    readonly code: 'RESTORE_POINT_NOT_FOUND' | 'RESTORE_POINT_IN_USE',
    message: string,
  ) {
    super(message);
    this.name = 'RestorePointDeleteError';
  }
}

/**
 * Turns "delete this restore point" into a run (kind delete-restore-point, no job) of one task any
 * transfer worker executes. A restore point that a running restore reads, or that is already being
 * deleted, is refused rather than pulled from under it.
 */
@Injectable()
export class RestorePointDeleteLauncher extends BusResponder<DeleteRestorePointRequest, StartRunReply> {
  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_BUS) bus: Bus,
    @Inject(HAVEN_LOGGER) private readonly logger: JsonLogger,
  ) {
    super(bus, DELETE_RESTORE_POINT);
  }

  async start(request: DeleteRestorePointRequest): Promise<StartRunReply> {
    const point = await this.dataSource
      .getRepository(RestorePointEntity)
      .findOneBy({ id: request.restorePointId, tenantId: request.tenantId });
    if (!point)
      throw new RestorePointDeleteError(
        'RESTORE_POINT_NOT_FOUND',
        `Restore point ${request.restorePointId} does not exist`,
      );
    const remote = await this.dataSource
      .getRepository(RemoteEntity)
      .findOneBy({ id: point.remoteId, tenantId: request.tenantId });

    const runId = await launchSingleTaskRun(this.dataSource, this.bus, {
      tenantId: request.tenantId,
      kind: 'delete-restore-point',
      trigger: 'manual',
      progress: { remoteId: point.remoteId, restorePointId: point.id },
      guard: (tx) => this.refuseWhileInUse(tx, point),
      task: {
        type: RESTORE_POINT_DELETE_TASK,
        subject: `${point.vmName} ${point.takenAt.toISOString()} on remote ${remote?.name ?? point.remoteId}`,
        input: { restorePointId: point.id, remoteId: point.remoteId, manifestKey: point.manifestKey },
      },
    });
    this.logger.log(
      { msg: 'restore point deletion started', runId, restorePointId: point.id, remoteId: point.remoteId },
      'RestorePointDeleteLauncher',
    );
    return { runId, tasks: 1 };
  }

  /**
   * Refuses while an open restore of the restore point, or an open deletion of it, names it in its
   * task's input. Run in the transaction that starts the deletion, under the restore point's row
   * lock, which a restore's start takes too: two starts cannot both pass.
   */
  private async refuseWhileInUse(tx: EntityManager, point: RestorePointEntity): Promise<void> {
    if (!(await lockRestorePoint(tx, point)))
      throw new RestorePointDeleteError(
        'RESTORE_POINT_NOT_FOUND',
        `Restore point ${point.id} does not exist`,
      );
    const open = await openTasksOf(tx, point, [RESTORE_VM_TASK, RESTORE_POINT_DELETE_TASK]);
    const task = open.at(0);
    if (task === undefined) return;
    throw new RestorePointDeleteError(
      'RESTORE_POINT_IN_USE',
      task.type === RESTORE_VM_TASK
        ? `Restore point ${point.id} is being restored by run ${task.run_id}; delete it once that run has ended`
        : `Restore point ${point.id} is already being deleted by run ${task.run_id}`,
    );
  }
}
