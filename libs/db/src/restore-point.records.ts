import type { EntityManager } from 'typeorm';

export interface RestorePointRecord {
  tenantId: string;
  remoteId: string;
  jobId: string | null;
  runId: string | null;
  vmUuid: string;
  vmName: string;
  kind: 'full' | 'incremental';
  manifestKey: string;
  logicalBytes: number;
  storedBytes: number;
  gfsTags: string[];
  /** When the VM's snapshot was taken (XAPI: to the second). */
  takenAt: string | Date;
  /** When the restore point was committed: orders restore points taken in the same second. */
  committedAt: string | Date;
}

/**
 * Records a restore point committed on a remote; a second record of the same manifest adds nothing
 * (redelivered task results, remote syncs). The remote must belong to the tenant. True when added.
 */
export async function insertRestorePoint(
  manager: EntityManager,
  record: RestorePointRecord,
): Promise<boolean> {
  const rows: { id: string }[] = await manager.query(
    `WITH added AS (
       INSERT INTO restore_points (id, tenant_id, remote_id, job_id, run_id, vm_uuid, vm_name, kind, manifest_key, logical_bytes, stored_bytes, gfs_tags, taken_at, committed_at)
       SELECT gen_random_uuid(), $1, r.id, j.id, ru.id, $5, $6, $7, $8, $9, $10, $11, $12, $13
       FROM remotes r
       LEFT JOIN jobs j ON j.id = $3 AND j.tenant_id = $1
       LEFT JOIN runs ru ON ru.id = $4 AND ru.tenant_id = $1
       WHERE r.id = $2 AND r.tenant_id = $1
       ON CONFLICT DO NOTHING
       RETURNING id)
     SELECT id FROM added`,
    [
      record.tenantId,
      record.remoteId,
      record.jobId,
      record.runId,
      record.vmUuid,
      record.vmName,
      record.kind,
      record.manifestKey,
      record.logicalBytes,
      record.storedBytes,
      record.gfsTags,
      record.takenAt,
      record.committedAt,
    ],
  );
  return rows.length > 0;
}
