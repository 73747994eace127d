import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Restore runs: a run that belongs to no job (it restores a restore point), told apart by `kind`. */
export class RestoreRuns1764150000000 implements MigrationInterface {
  name = 'RestoreRuns1764150000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE runs ALTER COLUMN job_id DROP NOT NULL`);
    await q.query(
      `ALTER TABLE runs ADD COLUMN kind text NOT NULL DEFAULT 'backup' CHECK (kind IN ('backup', 'restore'))`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DELETE FROM runs WHERE job_id IS NULL`);
    await q.query(`ALTER TABLE runs DROP COLUMN kind`);
    await q.query(`ALTER TABLE runs ALTER COLUMN job_id SET NOT NULL`);
  }
}
