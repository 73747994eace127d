import { randomBytes } from 'node:crypto';
import type { DataSource } from 'typeorm';
import { createTestDatabase, describeIntegration, scratchDir } from '@haven/testing';
import { apiKeyId, bootstrapCatalog, hashApiKey } from './catalog.bootstrap';
import { type CatalogDatabase, openCatalog } from './catalog.data-source';
import { ApiKeyEntity, RemoteEntity, RestorePointEntity, TenantEntity } from './entities';
import { recordRemoteRepository } from './remote.records';
import { MasterKeyMismatchError, SecretBox } from './secret.box';

function catalogBehaviour(
  open: () => Promise<{ database: CatalogDatabase; cleanup: () => Promise<void> }>,
): void {
  let database: CatalogDatabase;
  let cleanup: () => Promise<void>;
  let dataSource: DataSource;
  const masterKey = randomBytes(32);

  beforeAll(async () => {
    ({ database, cleanup } = await open());
    dataSource = await openCatalog(database, { migrate: true });
  });
  afterAll(async () => {
    await dataSource.destroy();
    await cleanup();
  });

  it('applies every migration and has none pending', async () => {
    expect(await dataSource.showMigrations()).toBe(false);
    const tables: { table_name: string }[] = await dataSource.query(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`,
    );
    expect(tables.map((t) => t.table_name)).toEqual(
      expect.arrayContaining([
        'api_keys',
        'audit_log',
        'jobs',
        'pools',
        'remotes',
        'restore_points',
        'runs',
        'schedules',
        'tasks',
        'tenants',
      ]),
    );
  });

  it('creates the system tenant and one admin key on first start only, storing only its hash', async () => {
    const first = await bootstrapCatalog(dataSource, new SecretBox(masterKey));
    expect(first.createdAdminKey).toMatch(/^hvn_/);
    const second = await bootstrapCatalog(dataSource, new SecretBox(masterKey));
    expect(second.createdAdminKey).toBeUndefined();
    expect(second.systemTenantId).toBe(first.systemTenantId);
    const keys = await dataSource.getRepository(ApiKeyEntity).find();
    expect(keys).toHaveLength(1);
    expect(keys[0].id).toBe(apiKeyId(first.createdAdminKey!));
    expect(keys[0].keyHash).toBe(hashApiKey(first.createdAdminKey!));
    expect(JSON.stringify(keys)).not.toContain(first.createdAdminKey!.slice(40));
    expect(await dataSource.getRepository(TenantEntity).count()).toBe(1);
  });

  it('refuses another master key than the one the catalog was created with', async () => {
    await expect(bootstrapCatalog(dataSource, new SecretBox(randomBytes(32)))).rejects.toBeInstanceOf(
      MasterKeyMismatchError,
    );
  });

  it('rejects a row of an unknown role at the database level', async () => {
    const tenant = await dataSource.getRepository(TenantEntity).findOneByOrFail({ isSystem: true });
    await expect(
      dataSource.query(
        `INSERT INTO api_keys (id, tenant_id, name, role, key_hash) VALUES (gen_random_uuid(), $1, 'x', 'root', 'h')`,
        [tenant.id],
      ),
    ).rejects.toThrow(/check constraint/);
  });

  /** Back to the catalog as it was before migration `name` (later ones undone too); a new tenant's id. */
  async function catalogBefore(name: string, tenantName: string): Promise<string> {
    const applied = async (): Promise<boolean> =>
      (await dataSource.query<unknown[]>(`SELECT 1 FROM haven_migrations WHERE name = $1`, [name])).length >
      0;
    while (await applied()) await dataSource.undoLastMigration({ transaction: 'each' });
    const tenants: { id: string }[] = await dataSource.query(
      `INSERT INTO tenants (id, name) VALUES (gen_random_uuid(), $1) RETURNING id`,
      [tenantName],
    );
    return tenants[0].id;
  }

  it('gives remotes made before it no repository id, then records the first one each remote opens', async () => {
    const tenantId = await catalogBefore('RemoteRepositoryId1764190000000', 'remote-ids');
    const remotes: { id: string }[] = await dataSource.query(
      `INSERT INTO remotes (id, tenant_id, name, type, settings) VALUES (gen_random_uuid(), $1, 'nas', 'local', '{}'), (gen_random_uuid(), $1, 'bucket', 's3', '{}') RETURNING id`,
      [tenantId],
    );
    const nas = remotes[0].id;
    const bucket = remotes[1].id;
    await dataSource.runMigrations({ transaction: 'each' });
    expect(await dataSource.showMigrations()).toBe(false);
    const rows = dataSource.getRepository(RemoteEntity);
    expect((await rows.findOneByOrFail({ id: nas })).repositoryId).toBeNull();

    const manager = dataSource.manager;
    expect(await recordRemoteRepository(manager, tenantId, nas, 'repository-a')).toBe('repository-a');
    // A concurrent or later first use that found another repository changes nothing: it is told the recorded one.
    expect(await recordRemoteRepository(manager, tenantId, nas, 'repository-b')).toBe('repository-a');
    expect((await rows.findOneByOrFail({ id: nas })).repositoryId).toBe('repository-a');
    expect((await rows.findOneByOrFail({ id: bucket })).repositoryId).toBeNull();
    // Another tenant's remote is neither written nor answered.
    const other: { id: string }[] = await dataSource.query(
      `INSERT INTO tenants (id, name) VALUES (gen_random_uuid(), 'other') RETURNING id`,
    );
    expect(await recordRemoteRepository(manager, other[0].id, bucket, 'repository-c')).toBeUndefined();
    expect((await rows.findOneByOrFail({ id: bucket })).repositoryId).toBeNull();
  });

  it('gives restore points recorded before it their snapshot time as commit time', async () => {
    const tenantId = await catalogBefore('RestorePointCommitOrder1764210000000', 'commit-order');
    const remotes: { id: string }[] = await dataSource.query(
      `INSERT INTO remotes (id, tenant_id, name, type, settings) VALUES (gen_random_uuid(), $1, 'nas', 'local', '{}') RETURNING id`,
      [tenantId],
    );
    const takenAt = '2026-12-01T02:30:00.000Z';
    const points: { id: string }[] = await dataSource.query(
      `INSERT INTO restore_points (id, tenant_id, remote_id, vm_uuid, vm_name, kind, manifest_key, logical_bytes, stored_bytes, taken_at)
       VALUES (gen_random_uuid(), $1, $2, 'vm', 'web', 'full', 'restore-points/a/manifest', 1, 1, $3) RETURNING id`,
      [tenantId, remotes[0].id, takenAt],
    );
    await dataSource.runMigrations({ transaction: 'each' });
    expect(await dataSource.showMigrations()).toBe(false);
    const point = await dataSource.getRepository(RestorePointEntity).findOneByOrFail({ id: points[0].id });
    expect(point.committedAt.toISOString()).toBe(takenAt);
    // From now on the column is required.
    await expect(
      dataSource.query(
        `INSERT INTO restore_points (id, tenant_id, remote_id, vm_uuid, vm_name, kind, manifest_key, logical_bytes, stored_bytes, taken_at)
         VALUES (gen_random_uuid(), $1, $2, 'vm', 'web', 'full', 'restore-points/b/manifest', 1, 1, $3)`,
        [tenantId, remotes[0].id, takenAt],
      ),
    ).rejects.toThrow(/committed_at/);
  });
}

describe('catalog on embedded PGlite', () => {
  catalogBehaviour(async () => {
    const dir = await scratchDir('haven-pglite-');
    return { database: { kind: 'pglite', dataDir: dir.path }, cleanup: dir.cleanup };
  });
});

describeIntegration('catalog on PostgreSQL', ['postgres'], () => {
  catalogBehaviour(async () => {
    const db = await createTestDatabase();
    return { database: { kind: 'postgres', url: db.url }, cleanup: db.drop };
  });
});
