import { Inject, Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';
import type { Bus } from '@haven/bus';
import {
  RESTORE_POINT_DELETE_TASK,
  START_RESTORE,
  type StartRestoreRequest,
  type StartRunReply,
} from '@haven/contracts';
import { PoolEntity, RestorePointEntity } from '@haven/db';
import type { JsonLogger } from '@haven/observability';
import { HAVEN_BUS, HAVEN_LOGGER } from '@haven/service-core';
import { BusResponder } from './bus.responder';
import { lockRestorePoint, openTasksOf } from './restore-point.lock';
import { launchSingleTaskRun } from './single-task.run';

/** Task type of a restore run; the transfer worker runs it with its built-in executor. */
export const RESTORE_VM_TASK = 'restore.vm';

/** A restore that cannot start: the requester gets this code and message. */
export class RestoreStartError extends Error {
  constructor(
    readonly code: 'RESTORE_POINT_NOT_FOUND' | 'POOL_NOT_FOUND' | 'RESTORE_POINT_IN_USE',
    message: string,
  ) {
    super(message);
    this.name = 'RestoreStartError';
  }
}

/**
 * Refuses to restore a restore point an open deletion is removing. Run in the transaction that
 * starts the restore, under the restore point's row lock, which a deletion's start takes too.
 */
async function refuseWhileDeleted(tx: EntityManager, point: RestorePointEntity): Promise<void> {
  if (!(await lockRestorePoint(tx, point)))
    throw new RestoreStartError('RESTORE_POINT_NOT_FOUND', `Restore point ${point.id} does not exist`);
  const deletion = (await openTasksOf(tx, point, [RESTORE_POINT_DELETE_TASK])).at(0);
  if (deletion !== undefined)
    throw new RestoreStartError(
      'RESTORE_POINT_IN_USE',
      `Restore point ${point.id} is being deleted by run ${deletion.run_id}; it cannot be restored`,
    );
}

/**
 * Turns "restore this restore point" into a run (kind restore, no job) of one `restore.vm` task,
 * queued under the task's id like job tasks, so it survives a worker restart.
 */
@Injectable()
export class RestoreLauncher extends BusResponder<StartRestoreRequest, StartRunReply> {
  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_BUS) bus: Bus,
    @Inject(HAVEN_LOGGER) private readonly logger: JsonLogger,
  ) {
    super(bus, START_RESTORE);
  }

  async start(request: StartRestoreRequest): Promise<StartRunReply> {
    const point = await this.dataSource
      .getRepository(RestorePointEntity)
      .findOneBy({ id: request.restorePointId, tenantId: request.tenantId });
    if (!point)
      throw new RestoreStartError(
        'RESTORE_POINT_NOT_FOUND',
        `Restore point ${request.restorePointId} does not exist`,
      );
    const pool = await this.dataSource
      .getRepository(PoolEntity)
      .findOneBy({ id: request.poolId, tenantId: request.tenantId });
    if (!pool) throw new RestoreStartError('POOL_NOT_FOUND', `Pool ${request.poolId} does not exist`);

    const runId = await launchSingleTaskRun(this.dataSource, this.bus, {
      tenantId: request.tenantId,
      kind: 'restore',
      trigger: 'manual',
      guard: (tx) => refuseWhileDeleted(tx, point),
      task: {
        type: RESTORE_VM_TASK,
        subject: `${point.vmName} -> pool ${pool.name}`,
        input: {
          restorePointId: point.id,
          remoteId: point.remoteId,
          manifestKey: point.manifestKey,
          poolId: pool.id,
          ...(request.srUuid === undefined ? {} : { srUuid: request.srUuid }),
          ...(request.name === undefined ? {} : { name: request.name }),
          ...(request.keepMacs === undefined ? {} : { keepMacs: request.keepMacs }),
        },
      },
    });
    this.logger.log(
      { msg: 'restore started', runId, restorePointId: point.id, poolId: pool.id },
      'RestoreLauncher',
    );
    return { runId, tasks: 1 };
  }
}
