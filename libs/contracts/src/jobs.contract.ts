import { defineRequest, defineWorkQueue } from './subject';

export interface StartRunRequest {
  tenantId: string;
  jobId: string;
  trigger: 'manual' | 'schedule';
  scheduleId?: string;
  /** Shown in the run's log, e.g. ticks a stopped scheduler missed. */
  note?: string;
}

export interface StartRunReply {
  runId: string;
  tasks: number;
}

/** Gateway (manual run) -> scheduler: plan a run of a job and queue its tasks. */
export const START_RUN = defineRequest<StartRunRequest, StartRunReply>('haven.v1.scheduler.runs.start');

/** One task of a run, for any worker; the catalog row holds the rest. */
export interface TaskWorkItem {
  tenantId: string;
  runId: string;
  taskId: string;
}

/** How long a task may go without a sign of life before another worker takes it, by default. */
export const DEFAULT_TASK_ACK_WAIT_MS = 60_000;

/**
 * Durable work of job runs. A worker that dies mid-task stops acking; the task goes to another
 * worker after `ackWaitMs` (workers send in-progress acks well within it while they run a task, so
 * a short ack wait only shortens the time a dead worker's task waits). Executors are idempotent,
 * so redelivery is safe. Producers and consumers may differ in ackWaitMs: it is a setting of the
 * consumers (HAVEN_TASK_ACK_WAIT_MS), not of the stored items.
 */
export function jobTasksQueue(ackWaitMs = DEFAULT_TASK_ACK_WAIT_MS) {
  return defineWorkQueue<TaskWorkItem>('job-tasks', {
    maxDeliver: 3,
    ackWaitMs,
    retryDelaysMs: [2_000, 10_000],
  });
}

export const JOB_TASKS = jobTasksQueue();

export interface StartRestoreRequest {
  tenantId: string;
  /** Catalog id of the restore point. */
  restorePointId: string;
  poolId: string;
  /** SR of the new disks; the pool's default (else first disk SR) when absent. */
  srUuid?: string;
  /** Name of the new VM; "<vm name> (restored <date>)" when absent. */
  name?: string;
  /** Keep the recorded MAC addresses (default: new ones, so the copy never clashes with its original). */
  keepMacs?: boolean;
}

/** Gateway -> scheduler: restore a restore point as a new VM, as a run of one `restore.vm` task. */
export const START_RESTORE = defineRequest<StartRestoreRequest, StartRunReply>(
  'haven.v1.scheduler.restores.start',
);

/** Task types of maintenance runs; the transfer worker runs them with built-in executors. */
export const REPOSITORY_GC_TASK = 'repository.gc';
export const REPOSITORY_VERIFY_TASK = 'repository.verify';

/** A restore point a verify found broken, in the `repository.verify` task's result. */
export interface DamagedRestorePointReport {
  /** Manifest key on the remote: with the remote, it names the catalog's restore point. */
  manifestKey: string;
  label: string;
  vmUuid?: string;
  reasons: string[];
  chunks: { chunkId: string; reason: string }[];
}

/** Maintenance of one remote's repository, run as a run of one task by any transfer worker. */
export type MaintenanceKind = 'gc' | 'verify';

export interface StartMaintenanceRequest {
  tenantId: string;
  remoteId: string;
  kind: MaintenanceKind;
  trigger: 'manual' | 'schedule';
  /** gc: chunks younger than this are kept (writers may still need them). Default 24 h. */
  safetyWindowMs?: number;
  /** verify: re-hash only this fraction (0..1) or count (>= 1) of chunks; default all. */
  sample?: number;
  /** Why it runs, e.g. the run whose retention expired restore points. */
  note?: string;
}

/** Gateway or catalog -> scheduler: start a `gc` or `verify` run on a remote. */
export const START_MAINTENANCE = defineRequest<StartMaintenanceRequest, StartRunReply>(
  'haven.v1.scheduler.maintenance.start',
);

/** Task type of a run of kind `delete-restore-point`; the transfer worker runs it with a built-in executor. */
export const RESTORE_POINT_DELETE_TASK = 'restore-point.delete';

export interface DeleteRestorePointRequest {
  tenantId: string;
  /** Catalog id of the restore point. */
  restorePointId: string;
}

/**
 * Gateway -> scheduler: delete one restore point from its remote (an incremental restore point or a
 * full-backup archive), as a run of one `restore-point.delete` task. Its result lists the restore
 * point under `expiredRestorePoints`, so the catalog drops the row as for retention and then starts
 * a garbage collection of the remote.
 */
export const DELETE_RESTORE_POINT = defineRequest<DeleteRestorePointRequest, StartRunReply>(
  'haven.v1.scheduler.restore-points.delete',
);
