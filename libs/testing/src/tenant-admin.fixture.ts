import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** A tenant made through the API, with the admin API key end-to-end suites act as. */
export interface TenantAdmin {
  tenantId: string;
  /** The key's secret (`hvn_…`), shown once by the API. */
  key: string;
}

/** The gateway refused a step of a suite's tenant setup. */
export class TenantSetupError extends Error {
  readonly code = 'TEST_TENANT_SETUP_FAILED';
  constructor(
    readonly step: string,
    readonly status: number,
    body: string,
  ) {
    super(
      `${step} failed with HTTP ${status}: ${body.slice(0, 500)}; ` +
        'check that the key is the system admin key of this Haven and that the tenant name is unused',
    );
    this.name = 'TenantSetupError';
  }
}

/** The first system admin key a Haven writes into its data folder (`$HAVEN_DATA/admin-key`). */
export async function readSystemAdminKey(dataDir: string): Promise<string> {
  return (await readFile(join(dataDir, 'admin-key'), 'utf8')).trim();
}

/**
 * Creates tenant `name` and an admin API key named "`name` admin" in it, as the system admin
 * `systemKey` would through `POST /api/v1/tenants` then `POST /api/v1/api-keys`.
 */
export async function createTenantAdmin(
  baseUrl: string,
  systemKey: string,
  name: string,
): Promise<TenantAdmin> {
  const post = async (path: string, step: string, body: Record<string, unknown>): Promise<unknown> => {
    const response = await fetch(new URL(path, baseUrl), {
      method: 'POST',
      headers: { authorization: `Bearer ${systemKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    if (response.status !== 201) throw new TenantSetupError(step, response.status, text);
    return JSON.parse(text) as unknown;
  };
  const tenant = await post('/api/v1/tenants', `creating tenant "${name}"`, { name });
  const tenantId = stringField(tenant, 'id', `creating tenant "${name}"`);
  const step = `creating the admin key of tenant "${name}"`;
  const created = await post('/api/v1/api-keys', step, { name: `${name} admin`, role: 'admin', tenantId });
  return { tenantId, key: stringField(created, 'key', step) };
}

function stringField(body: unknown, field: string, step: string): string {
  const value =
    typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[field] : undefined;
  if (typeof value !== 'string')
    throw new TenantSetupError(step, 201, `no "${field}" in ${JSON.stringify(body)}`);
  return value;
}
