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
