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

/**
 * Durable work of job runs. A worker that dies mid-task stops acking; the task goes to another
 * worker after ackWait. Executors are idempotent, so redelivery is safe.
 */
export const JOB_TASKS = defineWorkQueue<TaskWorkItem>('job-tasks', {
  maxDeliver: 3,
  ackWaitMs: 60_000,
  retryDelaysMs: [2_000, 10_000],
});

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
