import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { DataSource } from 'typeorm';
import { ApiKeyEntity, type Role, TenantEntity } from './entities';
import { MasterKeyMismatchError, type SecretBox } from './secret.box';

export const API_KEY_PREFIX = 'hvn_';

/** API keys are 256-bit random strings, so a plain SHA-256 is a sufficient one-way hash. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** Returns `hvn_<key id without dashes>_<secret>`: the id lets the hash be found by primary key. */
export function newApiKey(): { id: string; key: string } {
  const id = randomUUID();
  return { id, key: `${API_KEY_PREFIX}${id.replaceAll('-', '')}_${randomBytes(32).toString('base64url')}` };
}

export function apiKeyId(key: string): string | undefined {
  const match = /^hvn_([0-9a-f]{32})_[A-Za-z0-9_-]{43}$/.exec(key);
  if (!match?.[1]) return undefined;
  const h = match[1];
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export async function createApiKey(
  dataSource: DataSource,
  input: { tenantId: string; name: string; role: Role },
): Promise<{ entity: ApiKeyEntity; key: string }> {
  const { id, key } = newApiKey();
  const entity = dataSource.getRepository(ApiKeyEntity).create({
    id,
    tenantId: input.tenantId,
    name: input.name,
    role: input.role,
    keyHash: hashApiKey(key),
    lastUsedAt: null,
    revokedAt: null,
  });
  await dataSource.getRepository(ApiKeyEntity).insert(entity);
  return { entity, key };
}

/**
 * First start of a catalog: checks (or records) the master key, creates the system tenant and its
 * admin key. Returns the admin key only when it was created now: it is shown once, never again.
 */
export async function bootstrapCatalog(
  dataSource: DataSource,
  secrets: SecretBox,
): Promise<{ systemTenantId: string; createdAdminKey?: string }> {
  return dataSource.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(7240113)`);
    const rows: { value: string }[] = await tx.query(
      `SELECT value FROM catalog_settings WHERE key = 'master_key_check'`,
    );
    const check = rows.at(0);
    if (check === undefined) {
      await tx.query(`INSERT INTO catalog_settings (key, value) VALUES ('master_key_check', $1)`, [
        secrets.checkValue(),
      ]);
    } else if (!secrets.matches(check.value)) {
      throw new MasterKeyMismatchError();
    }
    const tenants = tx.getRepository(TenantEntity);
    const existing = await tenants.findOne({ where: { isSystem: true } });
    if (existing) return { systemTenantId: existing.id };
    const system = tenants.create({ id: randomUUID(), name: 'system', isSystem: true });
    await tenants.insert(system);
    const { id, key } = newApiKey();
    await tx.getRepository(ApiKeyEntity).insert({
      id,
      tenantId: system.id,
      name: 'initial admin key',
      role: 'admin',
      keyHash: hashApiKey(key),
      lastUsedAt: null,
      revokedAt: null,
    });
    return { systemTenantId: system.id, createdAdminKey: key };
  });
}
