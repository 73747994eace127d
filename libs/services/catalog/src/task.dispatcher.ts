import type { DataSource, EntityManager } from 'typeorm';
import type { Bus } from '@haven/bus';
import { JOB_TASKS } from '@haven/contracts';

/**
 * Queues the tasks of a run that wait for a free slot: as many as its cap (`runs.task_concurrency`,
 * null = all) allows beside those already queued and not ended. The run row is locked, so two
 * callers (a task ending, the sweep, another catalog replica) never both fill one slot. Items are
 * enqueued under the task's id before `queued_at` is written: a crash in between leaves the task
 * waiting, and the next dispatch enqueues the same id again, which the queue's dedupe absorbs.
 * Returns the ids queued now.
 */
export async function dispatchWaitingTasks(
  manager: EntityManager,
  bus: Bus,
  tenantId: string,
  runId: string,
): Promise<string[]> {
  const runs: { status: string; task_concurrency: number | null }[] = await manager.query(
    'SELECT status, task_concurrency FROM runs WHERE id = $1 AND tenant_id = $2 FOR UPDATE',
    [runId, tenantId],
  );
  const run = runs.at(0);
  if (!run || run.status !== 'running') return [];
  let limit: number | null = null;
  if (run.task_concurrency !== null) {
    const counts: { in_flight: string }[] = await manager.query(
      `SELECT count(*) AS in_flight FROM tasks
       WHERE run_id = $1 AND tenant_id = $2 AND queued_at IS NOT NULL
         AND status NOT IN ('success', 'failure', 'cancelled')`,
      [runId, tenantId],
    );
    limit = run.task_concurrency - Number(counts.at(0)?.in_flight ?? 0);
    if (limit <= 0) return [];
  }
  const waiting: { id: string }[] = await manager.query(
    `SELECT id FROM tasks
     WHERE run_id = $1 AND tenant_id = $2 AND queued_at IS NULL AND status = 'pending'
     ORDER BY created_at, id ${limit === null ? '' : 'LIMIT $3'}`,
    limit === null ? [runId, tenantId] : [runId, tenantId, limit],
  );
  if (waiting.length === 0) return [];
  const ids = waiting.map((task) => task.id);
  for (const id of ids) await bus.enqueue(JOB_TASKS, { tenantId, runId, taskId: id }, { id });
  await manager.query('UPDATE tasks SET queued_at = now() WHERE id = ANY($1::uuid[])', [ids]);
  return ids;
}

/** Same, in a transaction of its own. */
export function dispatchWaitingTasksNow(
  dataSource: DataSource,
  bus: Bus,
  tenantId: string,
  runId: string,
): Promise<string[]> {
  return dataSource.transaction((tx) => dispatchWaitingTasks(tx, bus, tenantId, runId));
}
