import { randomUUID } from 'node:crypto';
import type { TaskEntity } from '@haven/db';

/** What a launcher decides about a new task; the rest of its row starts the same for every task. */
export interface PendingTask {
  tenantId: string;
  runId: string;
  type: string;
  subject: string;
  input: Record<string, unknown>;
  lockKey?: string | null;
}

/** The row of a task not yet queued nor tried: one place for the fields every new task starts with. */
export function pendingTaskRow(task: PendingTask): Omit<TaskEntity, 'createdAt'> {
  return {
    id: randomUUID(),
    tenantId: task.tenantId,
    runId: task.runId,
    type: task.type,
    subject: task.subject,
    input: task.input,
    status: 'pending',
    progress: {},
    attempts: 0,
    worker: null,
    result: null,
    error: null,
    queuedAt: null,
    startedAt: null,
    finishedAt: null,
    lockKey: task.lockKey ?? null,
  };
}
