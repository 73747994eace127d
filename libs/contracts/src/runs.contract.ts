import { defineEvent } from './subject';

/** Progress of a run's work: published by workers, stored by the catalog, streamed by the gateway (SSE). */
export interface RunProgressEvent {
  tenantId: string;
  runId: string;
  /** Absent for run-level changes. */
  taskId?: string;
  status: 'pending' | 'running' | 'success' | 'partial' | 'failure' | 'cancelled';
  /** Bytes done / total, speed, ETA, current step: whatever the job type reports. */
  progress: Record<string, unknown>;
  message?: string;
  /** A task's result, with its final success. */
  result?: Record<string, unknown>;
  /** A task's delivery attempt and the worker running it. */
  attempt?: number;
  worker?: string;
  at: string;
}

export const RUN_PROGRESS = defineEvent<RunProgressEvent>('haven.v1.runs.progress');
