import type { MigrationInterface, QueryRunner } from 'typeorm';

/** Runs of kind `delete-restore-point`: one restore point deleted by hand (DELETE /restore-points/:id). */
export class RestorePointDeleteRuns1764200000000 implements MigrationInterface {
  name = 'RestorePointDeleteRuns1764200000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE runs DROP CONSTRAINT runs_kind_check`);
    await q.query(
      `ALTER TABLE runs ADD CONSTRAINT runs_kind_check CHECK (kind IN ('backup', 'restore', 'gc', 'verify', 'delete-restore-point'))`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DELETE FROM runs WHERE kind = 'delete-restore-point'`);
    await q.query(`ALTER TABLE runs DROP CONSTRAINT runs_kind_check`);
    await q.query(
      `ALTER TABLE runs ADD CONSTRAINT runs_kind_check CHECK (kind IN ('backup', 'restore', 'gc', 'verify'))`,
    );
  }
}
