import type { EntityManager } from 'typeorm';
import { RestorePointEntity } from './entities';

/**
 * Records `repositoryId` as the repository a remote of the tenant holds, unless one is recorded
 * already (concurrent first uses: the first write wins, the others change nothing). Answers the id
 * recorded now, which differs from `repositoryId` when another was recorded first; undefined when
 * the remote is gone or belongs to another tenant.
 */
export async function recordRemoteRepository(
  manager: EntityManager,
  tenantId: string,
  remoteId: string,
  repositoryId: string,
): Promise<string | undefined> {
  await manager.query(
    `UPDATE remotes SET repository_id = $3 WHERE id = $1 AND tenant_id = $2 AND repository_id IS NULL`,
    [remoteId, tenantId, repositoryId],
  );
  const rows: { repository_id: string | null }[] = await manager.query(
    `SELECT repository_id FROM remotes WHERE id = $1 AND tenant_id = $2`,
    [remoteId, tenantId],
  );
  return rows[0]?.repository_id ?? undefined;
}

/**
 * The manifest key of the newest restore point the catalog lists on a remote of the tenant, or
 * undefined: what a remote from before repository ids were recorded must still hold before the
 * repository found there is recorded as its own.
 */
export async function newestCatalogRestorePointKey(
  manager: EntityManager,
  tenantId: string,
  remoteId: string,
): Promise<string | undefined> {
  const newest = await manager.getRepository(RestorePointEntity).findOne({
    where: { remoteId, tenantId },
    order: { takenAt: 'DESC', committedAt: 'DESC' },
    select: { id: true, manifestKey: true },
  });
  return newest?.manifestKey;
}
