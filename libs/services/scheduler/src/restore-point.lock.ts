import type { EntityManager } from 'typeorm';

/** What the launchers that read or delete a restore point know of it. */
interface RestorePointRef {
  id: string;
  tenantId: string;
}

/**
 * Locks the restore point's catalog row until the transaction ends (false when it is gone): the
 * starts of restores and deletions of one restore point take it, so each sees what the others
 * started before it.
 */
export async function lockRestorePoint(tx: EntityManager, point: RestorePointRef): Promise<boolean> {
  const rows: unknown[] = await tx.query(
    'SELECT id FROM restore_points WHERE id = $1 AND tenant_id = $2 FOR UPDATE',
    [point.id, point.tenantId],
  );
  return rows.length > 0;
}

/** The open tasks of `types` (not ended) whose input names the restore point: at most one, by run. */
export async function openTasksOf(
  tx: EntityManager,
  point: RestorePointRef,
  types: readonly string[],
): Promise<{ run_id: string; type: string }[]> {
  return tx.query(
    `SELECT run_id, type FROM tasks
     WHERE tenant_id = $1 AND type = ANY($2::text[]) AND input->>'restorePointId' = $3
       AND status NOT IN ('success', 'failure', 'cancelled')
     LIMIT 1`,
    [point.tenantId, types, point.id],
  );
}
