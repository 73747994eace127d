import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The first catalog schema. Every table but tenants carries tenant_id, and every lookup index
 * starts with it, so tenant-scoped queries never scan another tenant's rows.
 */
export class InitialCatalog1764140000000 implements MigrationInterface {
  name = 'InitialCatalog1764140000000';

  async up(q: QueryRunner): Promise<void> {
    // Install-wide values: the master-key check value, the catalog's own id.
    await q.query(`CREATE TABLE catalog_settings (key text PRIMARY KEY, value text NOT NULL)`);
    await q.query(`
      CREATE TABLE tenants (
        id uuid PRIMARY KEY,
        name text NOT NULL,
        is_system boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT tenants_name_unique UNIQUE (name)
      )`);
    await q.query(`CREATE UNIQUE INDEX tenants_one_system ON tenants (is_system) WHERE is_system`);

    await q.query(`
      CREATE TABLE api_keys (
        id uuid PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name text NOT NULL,
        role text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
        key_hash text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        last_used_at timestamptz,
        revoked_at timestamptz
      )`);
    await q.query(`CREATE INDEX api_keys_tenant ON api_keys (tenant_id)`);

    await q.query(`
      CREATE TABLE pools (
        id uuid PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name text NOT NULL,
        url text NOT NULL,
        username text NOT NULL,
        password_sealed text NOT NULL,
        allow_unauthorized boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT pools_name_unique UNIQUE (tenant_id, name)
      )`);

    await q.query(`
      CREATE TABLE remotes (
        id uuid PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name text NOT NULL,
        type text NOT NULL,
        settings jsonb NOT NULL,
        secrets_sealed text,
        repository_key_sealed text,
        enabled boolean NOT NULL DEFAULT true,
        last_test jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT remotes_name_unique UNIQUE (tenant_id, name)
      )`);

    await q.query(`
      CREATE TABLE jobs (
        id uuid PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name text NOT NULL,
        type text NOT NULL,
        selection jsonb NOT NULL,
        remote_ids uuid[] NOT NULL,
        settings jsonb NOT NULL,
        enabled boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT jobs_name_unique UNIQUE (tenant_id, name)
      )`);

    await q.query(`
      CREATE TABLE schedules (
        id uuid PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        job_id uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        name text NOT NULL,
        cron text NOT NULL,
        timezone text NOT NULL,
        enabled boolean NOT NULL DEFAULT true,
        retention jsonb NOT NULL,
        last_fired_at timestamptz,
        next_fire_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX schedules_tenant_job ON schedules (tenant_id, job_id)`);
    await q.query(`CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE enabled`);

    await q.query(`
      CREATE TABLE runs (
        id uuid PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        job_id uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        schedule_id uuid REFERENCES schedules(id) ON DELETE SET NULL,
        trigger text NOT NULL CHECK (trigger IN ('manual', 'schedule')),
        status text NOT NULL CHECK (status IN ('pending', 'running', 'success', 'partial', 'failure', 'cancelled')),
        progress jsonb NOT NULL DEFAULT '{}',
        error text,
        created_at timestamptz(3) NOT NULL DEFAULT now(),
        started_at timestamptz,
        finished_at timestamptz
      )`);
    // Keyset pagination of the run list, newest first, optionally per job or status.
    // created_at is kept to the millisecond so a cursor carried as a JavaScript Date is exact.
    await q.query(`CREATE INDEX runs_tenant_created ON runs (tenant_id, created_at DESC, id DESC)`);
    await q.query(
      `CREATE INDEX runs_tenant_job_created ON runs (tenant_id, job_id, created_at DESC, id DESC)`,
    );
    await q.query(
      `CREATE INDEX runs_tenant_status_created ON runs (tenant_id, status, created_at DESC, id DESC)`,
    );

    await q.query(`
      CREATE TABLE tasks (
        id uuid PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        run_id uuid NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        type text NOT NULL,
        subject text NOT NULL,
        input jsonb NOT NULL DEFAULT '{}',
        status text NOT NULL CHECK (status IN ('pending', 'running', 'success', 'failure', 'cancelled')),
        progress jsonb NOT NULL DEFAULT '{}',
        attempts integer NOT NULL DEFAULT 0,
        worker text,
        result jsonb,
        error text,
        created_at timestamptz(3) NOT NULL DEFAULT now(),
        started_at timestamptz,
        finished_at timestamptz
      )`);
    await q.query(`CREATE INDEX tasks_tenant_run ON tasks (tenant_id, run_id, created_at, id)`);
    await q.query(`CREATE INDEX tasks_tenant_created ON tasks (tenant_id, created_at DESC, id DESC)`);

    await q.query(`
      CREATE TABLE restore_points (
        id uuid PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        remote_id uuid NOT NULL REFERENCES remotes(id) ON DELETE CASCADE,
        job_id uuid REFERENCES jobs(id) ON DELETE SET NULL,
        run_id uuid REFERENCES runs(id) ON DELETE SET NULL,
        vm_uuid text NOT NULL,
        vm_name text NOT NULL,
        kind text NOT NULL CHECK (kind IN ('full', 'incremental')),
        manifest_key text NOT NULL,
        logical_bytes bigint NOT NULL,
        stored_bytes bigint NOT NULL,
        gfs_tags text[] NOT NULL DEFAULT '{}',
        taken_at timestamptz(3) NOT NULL,
        CONSTRAINT restore_points_manifest_unique UNIQUE (remote_id, manifest_key)
      )`);
    await q.query(
      `CREATE INDEX restore_points_tenant_taken ON restore_points (tenant_id, taken_at DESC, id DESC)`,
    );
    await q.query(
      `CREATE INDEX restore_points_tenant_vm ON restore_points (tenant_id, vm_uuid, taken_at DESC)`,
    );

    await q.query(`
      CREATE TABLE audit_log (
        id bigserial PRIMARY KEY,
        tenant_id uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        actor_key_id uuid,
        action text NOT NULL,
        object_type text NOT NULL,
        object_id text,
        detail jsonb NOT NULL DEFAULT '{}',
        at timestamptz NOT NULL DEFAULT now()
      )`);
    await q.query(`CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at DESC)`);
  }

  async down(q: QueryRunner): Promise<void> {
    for (const table of [
      'audit_log',
      'restore_points',
      'tasks',
      'runs',
      'schedules',
      'jobs',
      'remotes',
      'pools',
      'api_keys',
      'tenants',
      'catalog_settings',
    ])
      await q.query(`DROP TABLE IF EXISTS ${table}`);
  }
}
