import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The catalog's half of "a VM is never backed up by two runs at once": an open task holds its
 * `lock_key` (e.g. `vm:<uuid>`), and the run launcher looks it up before queueing a new run's task.
 */
export class TaskLocks1764170000000 implements MigrationInterface {
  name = 'TaskLocks1764170000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE tasks ADD COLUMN lock_key text`);
    await q.query(
      `CREATE INDEX tasks_open_lock ON tasks (lock_key) WHERE lock_key IS NOT NULL AND status IN ('pending', 'running')`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX tasks_open_lock`);
    await q.query(`ALTER TABLE tasks DROP COLUMN lock_key`);
  }
}
