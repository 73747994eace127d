import { randomUUID } from 'node:crypto';
import { DataSource, type EntityManager } from 'typeorm';
import type { Bus } from '@haven/bus';
import { RUN_PROGRESS } from '@haven/contracts';
import { RunEntity, TaskEntity } from '@haven/db';
import { dispatchWaitingTasksNow } from '@haven/service-catalog';
import { pendingTaskRow } from './pending-task.row';

export interface SingleTaskRun {
  tenantId: string;
  kind: RunEntity['kind'];
  trigger: RunEntity['trigger'];
  /** Extra run progress fields besides `tasks: 1`. */
  progress?: Record<string, unknown>;
  task: { type: string; subject: string; input: Record<string, unknown> };
  /**
   * Runs first inside the transaction that writes the run, and throws to write nothing: a check
   * that must hold when the run starts (no conflicting run), made atomic with the start by the
   * row locks it takes.
   */
  guard?: (tx: EntityManager) => Promise<void>;
}

/**
 * Writes a run of no job (restore, gc, verify) with its one task in one transaction, then queues
 * the task like job tasks (under its id, so it survives a worker restart) and announces the run.
 */
export async function launchSingleTaskRun(
  dataSource: DataSource,
  bus: Bus,
  run: SingleTaskRun,
): Promise<string> {
  const runId = randomUUID();
  const now = new Date();
  await dataSource.transaction(async (tx) => {
    await run.guard?.(tx);
    await tx.getRepository(RunEntity).insert({
      id: runId,
      tenantId: run.tenantId,
      jobId: null,
      kind: run.kind,
      scheduleId: null,
      trigger: run.trigger,
      status: 'running',
      progress: { tasks: 1, ...run.progress },
      error: null,
      taskConcurrency: null,
      startedAt: now,
      finishedAt: null,
    });
    const taskRows = tx.getRepository(TaskEntity);
    await taskRows.save(taskRows.create(pendingTaskRow({ tenantId: run.tenantId, runId, ...run.task })), {
      reload: false,
    });
  });
  await dispatchWaitingTasksNow(dataSource, bus, run.tenantId, runId);
  await bus.publish(RUN_PROGRESS, {
    tenantId: run.tenantId,
    runId,
    status: 'running',
    progress: { tasks: 1 },
    at: now.toISOString(),
  });
  return runId;
}
