import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createTenantAdmin, readSystemAdminKey, TenantSetupError } from './tenant-admin.fixture';
import { scratchDir } from './scratch';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

interface Seen {
  method: string;
  path: string;
  authorization: string | undefined;
  body: Record<string, unknown>;
}

async function bodyOf(req: IncomingMessage): Promise<Record<string, unknown>> {
  let text = '';
  for await (const chunk of req) text += String(chunk);
  return JSON.parse(text) as Record<string, unknown>;
}

describe('createTenantAdmin', () => {
  let server: Server;
  let baseUrl = '';
  const seen: Seen[] = [];

  beforeAll(async () => {
    // A gateway stand-in: answers like Haven's tenants and api-keys endpoints, refuses a taken name.
    server = createServer((req, res) => {
      void bodyOf(req).then((body) => {
        seen.push({
          method: req.method ?? '',
          path: req.url ?? '',
          authorization: req.headers.authorization,
          body,
        });
        res.setHeader('content-type', 'application/json');
        if (req.url === '/api/v1/tenants' && body['name'] === 'taken') {
          res.statusCode = 409;
          res.end(JSON.stringify({ detail: 'a tenant named "taken" exists' }));
        } else if (req.url === '/api/v1/tenants') {
          res.statusCode = 201;
          res.end(JSON.stringify({ id: 'tenant-1', name: body['name'] }));
        } else {
          res.statusCode = 201;
          res.end(JSON.stringify({ id: 'key-1', key: 'hvn_secret' }));
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  beforeEach(() => {
    seen.length = 0;
  });

  it('creates the tenant, then its admin key named after it, as the system admin', async () => {
    await expect(createTenantAdmin(baseUrl, 'hvn_system', 'acme')).resolves.toEqual({
      tenantId: 'tenant-1',
      key: 'hvn_secret',
    });
    expect(seen).toEqual([
      { method: 'POST', path: '/api/v1/tenants', authorization: 'Bearer hvn_system', body: { name: 'acme' } },
      {
        method: 'POST',
        path: '/api/v1/api-keys',
        authorization: 'Bearer hvn_system',
        body: { name: 'acme admin', role: 'admin', tenantId: 'tenant-1' },
      },
    ]);
  });

  it('fails naming the step, the status and the answer when the gateway refuses', async () => {
    const failure = createTenantAdmin(baseUrl, 'hvn_system', 'taken');
    await expect(failure).rejects.toBeInstanceOf(TenantSetupError);
    await expect(failure).rejects.toThrow(/creating tenant "taken" failed with HTTP 409: .*exists/);
    expect(seen).toHaveLength(1);
  });

  it('reads the system admin key Haven wrote into its data folder', async () => {
    const data = await scratchDir('haven-admin-key-');
    try {
      await writeFile(join(data.path, 'admin-key'), 'hvn_written\n');
      await expect(readSystemAdminKey(data.path)).resolves.toBe('hvn_written');
    } finally {
      await data.cleanup();
    }
  });
});
