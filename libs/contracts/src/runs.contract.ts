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

/** One line of a run's log, as an executor (or the worker running it) said it. */
export interface RunLogLine {
  /** Absent for lines about the run as a whole. */
  taskId?: string;
  at: string;
  level: 'info' | 'warn' | 'error';
  message: string;
  fields?: Record<string, unknown>;
}

/** Log lines of one run, batched by the worker; stored by the catalog, streamed by the gateway (SSE). */
export interface RunLogBatch {
  tenantId: string;
  runId: string;
  lines: RunLogLine[];
}

export const RUN_LOGS = defineEvent<RunLogBatch>('haven.v1.runs.logs');
