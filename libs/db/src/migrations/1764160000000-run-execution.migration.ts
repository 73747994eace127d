import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Execution of runs: a cap on a run's tasks in flight (`runs.task_concurrency`, with
 * `tasks.queued_at` telling queued tasks from those still waiting), maintenance runs of kind `gc`
 * and `verify`, the runs' stored log lines, and restore points marked damaged by a verify.
 */
export class RunExecution1764160000000 implements MigrationInterface {
  name = 'RunExecution1764160000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_kind_check`);
    await q.query(
      `ALTER TABLE runs ADD CONSTRAINT runs_kind_check CHECK (kind IN ('backup', 'restore', 'gc', 'verify'))`,
    );
    await q.query(
      `ALTER TABLE runs ADD COLUMN task_concurrency integer CHECK (task_concurrency IS NULL OR task_concurrency >= 1)`,
    );
    await q.query(`ALTER TABLE tasks ADD COLUMN queued_at timestamptz`);
    // Every task written before this migration was queued when its run started.
    await q.query(`UPDATE tasks SET queued_at = created_at`);
    // The sweep looks for runs with tasks still waiting to be queued.
    await q.query(`CREATE INDEX tasks_waiting ON tasks (run_id, created_at, id) WHERE queued_at IS NULL`);

    await q.query(`
      CREATE TABLE run_logs (
        id bigserial PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        run_id uuid NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        task_id uuid REFERENCES tasks(id) ON DELETE CASCADE,
        at timestamptz(3) NOT NULL,
        level text NOT NULL CHECK (level IN ('info', 'warn', 'error')),
        message text NOT NULL,
        fields jsonb NOT NULL DEFAULT '{}'
      )`);
    await q.query(`CREATE INDEX run_logs_run ON run_logs (run_id, id)`);

    await q.query(`ALTER TABLE restore_points ADD COLUMN damaged_at timestamptz`);
    await q.query(`ALTER TABLE restore_points ADD COLUMN damage jsonb`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE restore_points DROP COLUMN damage`);
    await q.query(`ALTER TABLE restore_points DROP COLUMN damaged_at`);
    await q.query(`DROP TABLE run_logs`);
    await q.query(`DROP INDEX tasks_waiting`);
    await q.query(`ALTER TABLE tasks DROP COLUMN queued_at`);
    await q.query(`ALTER TABLE runs DROP COLUMN task_concurrency`);
    await q.query(`DELETE FROM runs WHERE kind IN ('gc', 'verify')`);
    await q.query(`ALTER TABLE runs DROP CONSTRAINT runs_kind_check`);
    await q.query(`ALTER TABLE runs ADD CONSTRAINT runs_kind_check CHECK (kind IN ('backup', 'restore'))`);
  }
}
