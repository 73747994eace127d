import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A remote's restore points by tenant: every backup task asks whether the catalog lists any on its
 * remotes (a remote that held backups must not get a new repository), and the restore point list
 * filters by remote. Without it both scan all of the tenant's restore points.
 */
export class RestorePointsByRemote1764180000000 implements MigrationInterface {
  name = 'RestorePointsByRemote1764180000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX restore_points_tenant_remote ON restore_points (tenant_id, remote_id)`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX restore_points_tenant_remote`);
  }
}
