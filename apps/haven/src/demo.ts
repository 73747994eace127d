import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { loadConfig } from '@haven/config';
import { exitOnBootFailure } from '@haven/service-core';
import { startXapiSimulator } from '@haven/xapi-sim';
import { startAllInOne } from './haven.app';

/**
 * `npm run demo`: Haven on embedded defaults (PGlite catalog, in-process bus) next to the XAPI
 * simulator; creates a tenant with its admin key and a pool pointing at the simulator, prints where
 * everything is, and serves until Ctrl-C (`--exit` stops after the tour).
 */
async function demo(): Promise<void> {
  const exitAfterTour = process.argv.includes('--exit');
  const config = loadConfig({
    ...process.env,
    HAVEN_DATA: process.env['HAVEN_DATA'] ?? './data/demo',
    LOG_LEVEL: process.env['LOG_LEVEL'] ?? 'warn',
  });
  const simulatorPassword = 'haven-demo';
  const simulator = await startXapiSimulator({
    port: 0,
    host: '127.0.0.1',
    stateDir: join(config.dataDir, 'xapi-sim'),
    vms: 2,
    diskSize: 256 * 1024 * 1024,
    seed: 'haven-demo',
    user: 'root',
    password: simulatorPassword,
  });
  const app = await startAllInOne(config);
  const url = (await app.getUrl()).replace('[::1]', 'localhost');
  const adminKey = readFileSync(join(config.dataDir, 'admin-key'), 'utf8').trim();

  const call = async <T>(method: string, path: string, key: string, body?: unknown): Promise<T> => {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const payload = (await response.json()) as T;
    if (!response.ok) throw new Error(`${method} ${path} failed: ${JSON.stringify(payload)}`);
    return payload;
  };

  const tenants = await call<{ items: { id: string; name: string }[] }>('GET', '/api/v1/tenants', adminKey);
  let tenant = tenants.items.find((t) => t.name === 'demo');
  tenant ??= await call<{ id: string; name: string }>('POST', '/api/v1/tenants', adminKey, { name: 'demo' });
  const key = await call<{ key: string }>('POST', '/api/v1/api-keys', adminKey, {
    name: `demo admin ${new Date().toISOString()}`,
    role: 'admin',
    tenantId: tenant.id,
  });
  const pools = await call<{ items: { id: string; name: string }[] }>('GET', '/api/v1/pools', key.key);
  for (const stale of pools.items.filter((p) => p.name === 'simulator'))
    await fetch(`${url}/api/v1/pools/${stale.id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${key.key}` },
    });
  const pool = await call<{ id: string }>('POST', '/api/v1/pools', key.key, {
    name: 'simulator',
    url: simulator.url,
    username: 'root',
    password: simulatorPassword,
  });

  process.stdout.write(
    [
      '',
      'Haven demo is running (embedded catalog and bus, XAPI simulator).',
      `  API:            ${url}/api/v1   (OpenAPI UI: ${url}/api/docs)`,
      `  Health:         ${url}/health   Metrics: ${url}/metrics`,
      `  XAPI simulator: ${simulator.url}`,
      `  Tenant "demo":  ${tenant.id}`,
      `  Pool:           ${pool.id} (simulator)`,
      `  Tenant key:     ${key.key}`,
      '',
      `  Try: HAVEN_URL=${url} HAVEN_KEY=${key.key} ./bin/haven.js pools list`,
      '',
      exitAfterTour ? 'Stopping (--exit).' : 'Serving until Ctrl-C.',
      '',
    ].join('\n'),
  );
  const stop = async () => {
    await app.close();
    await simulator.close();
  };
  if (exitAfterTour) {
    await stop();
    return;
  }
  process.once('SIGINT', () => void stop().then(() => process.exit(0)));
}

demo().catch(exitOnBootFailure);
