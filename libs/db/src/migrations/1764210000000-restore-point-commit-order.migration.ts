import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * When each restore point was committed, to the millisecond. A snapshot's time comes from XAPI to
 * the second, so two backups of a VM can share `taken_at`; the commit time orders them, newest
 * first, wherever restore points are listed. Rows recorded before have only their snapshot time.
 */
export class RestorePointCommitOrder1764210000000 implements MigrationInterface {
  name = 'RestorePointCommitOrder1764210000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE restore_points ADD COLUMN committed_at timestamptz(3)`);
    await q.query(`UPDATE restore_points SET committed_at = taken_at`);
    await q.query(`ALTER TABLE restore_points ALTER COLUMN committed_at SET NOT NULL`);
    await q.query(`DROP INDEX restore_points_tenant_taken`);
    await q.query(
      `CREATE INDEX restore_points_tenant_taken ON restore_points (tenant_id, taken_at DESC, committed_at DESC, id DESC)`,
    );
    await q.query(`DROP INDEX restore_points_tenant_vm`);
    await q.query(
      `CREATE INDEX restore_points_tenant_vm ON restore_points (tenant_id, vm_uuid, taken_at DESC, committed_at DESC)`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX restore_points_tenant_vm`);
    await q.query(
      `CREATE INDEX restore_points_tenant_vm ON restore_points (tenant_id, vm_uuid, taken_at DESC)`,
    );
    await q.query(`DROP INDEX restore_points_tenant_taken`);
    await q.query(
      `CREATE INDEX restore_points_tenant_taken ON restore_points (tenant_id, taken_at DESC, id DESC)`,
    );
    await q.query(`ALTER TABLE restore_points DROP COLUMN committed_at`);
  }
}
