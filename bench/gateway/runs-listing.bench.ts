/**
 * Gateway: latency of `GET /api/v1/runs?limit=50` with 100,000 runs in the catalog, requests sent
 * at a fixed rate (default 200/s), as a ratio to the same keyset query sent straight to PostgreSQL
 * with `pg` in the same run (the floor the gateway adds HTTP, auth, JSON and TypeORM to).
 *
 *   node bin/run.js bench/gateway/runs-listing.bench.ts [--runs 100000] [--rate 200] [--seconds 15]
 *   (needs PostgreSQL on HAVEN_TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres)
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { Client } from 'pg';
import { loadConfig } from '@haven/config';
import { createTestDatabase, scratchDir } from '@haven/testing';
import { startAllInOne } from '../../apps/haven/src/haven.app';

const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const index = args.indexOf(`--${name}`);
  return index >= 0 ? Number(args[index + 1]) : fallback;
};
const RUNS = option('runs', 100_000);
const RATE = option('rate', 200);
const SECONDS = option('seconds', 15);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** Fires `fn` RATE times a second for SECONDS (open loop: a slow answer does not delay the next request). */
async function atFixedRate(
  fn: () => Promise<void>,
): Promise<{ p50: number; p99: number; max: number; count: number; errors: number }> {
  const latencies: number[] = [];
  let errors = 0;
  const pending: Promise<void>[] = [];
  const interval = 1000 / RATE;
  const start = performance.now();
  for (let i = 0; i < RATE * SECONDS; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    pending.push(
      fn().then(
        () => void latencies.push(performance.now() - due),
        () => void errors++,
      ),
    );
  }
  await Promise.all(pending);
  latencies.sort((a, b) => a - b);
  return {
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies[latencies.length - 1] ?? NaN,
    count: latencies.length,
    errors,
  };
}

async function main(): Promise<void> {
  const database = await createTestDatabase('haven_bench');
  const data = await scratchDir('haven-bench-');
  const app = await startAllInOne(
    loadConfig({
      HAVEN_PORT: '0',
      HAVEN_HOST: '127.0.0.1',
      HAVEN_DATA: data.path,
      DATABASE_URL: database.url,
      LOG_LEVEL: 'error',
      HAVEN_PLUGINS: '@haven/remote-local',
    }),
  );
  const url = await app.getUrl();
  const adminKey = (await import('node:fs')).readFileSync(`${data.path}/admin-key`, 'utf8').trim();
  const pg = new Client({ connectionString: database.url });
  await pg.connect();
  try {
    const [{ id: tenantId }] = (await pg.query(`SELECT id FROM tenants WHERE is_system`)).rows as [
      { id: string },
    ];
    const jobId = randomUUID();
    await pg.query(
      `INSERT INTO jobs (id, tenant_id, name, type, selection, remote_ids, settings) VALUES ($1, $2, 'bench', 'backup.incremental', '{}', '{}', '{}')`,
      [jobId, tenantId],
    );
    const t0 = performance.now();
    await pg.query(
      `INSERT INTO runs (id, tenant_id, job_id, trigger, status, progress, created_at, started_at, finished_at)
       SELECT gen_random_uuid(), $1, $2, 'schedule', (ARRAY['success','failure','partial'])[1 + g % 3], '{"bytes": 1073741824}'::jsonb,
              now() - make_interval(mins => g), now() - make_interval(mins => g), now() - make_interval(mins => g) + interval '5 minutes'
       FROM generate_series(1, $3) AS g`,
      [tenantId, jobId, RUNS],
    );
    await pg.query('ANALYZE runs');
    process.stdout.write(`seeded ${RUNS} runs in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);

    // Warm both paths, then measure the raw query and the gateway at the same rate.
    const rawQuery = () =>
      pg
        .query(`SELECT * FROM runs WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT 51`, [
          tenantId,
        ])
        .then(() => undefined);
    const viaGateway = async () => {
      const response = await fetch(`${url}/api/v1/runs?limit=50`, {
        headers: { authorization: `Bearer ${adminKey}` },
      });
      const body = (await response.json()) as { items: unknown[] };
      if (response.status !== 200 || body.items.length !== 50)
        throw new Error(`unexpected answer ${response.status}`);
    };
    for (let i = 0; i < 200; i++) {
      await rawQuery();
      await viaGateway();
    }
    const raw = await atFixedRate(rawQuery);
    const gateway = await atFixedRate(viaGateway);
    const row = (name: string, f: typeof raw) =>
      `| ${name} | ${f.count} | ${f.errors} | ${f.p50.toFixed(2)} | ${f.p99.toFixed(2)} | ${f.max.toFixed(2)} |`;
    process.stdout.write(
      [
        `\nGET /api/v1/runs?limit=50, ${RUNS} runs, ${RATE} requests/s for ${SECONDS} s`,
        '| path | requests | errors | p50 ms | p99 ms | max ms |',
        '| --- | --- | --- | --- | --- | --- |',
        row('raw keyset query (pg)', raw),
        row('gateway (HTTP + auth + JSON)', gateway),
        `ratio gateway/raw: p50 ${(gateway.p50 / raw.p50).toFixed(1)}x, p99 ${(gateway.p99 / raw.p99).toFixed(1)}x; p99 target < 50 ms: ${gateway.p99 < 50 ? 'met' : 'NOT met'}`,
        '',
      ].join('\n'),
    );
  } finally {
    await pg.end();
    await app.close();
    await database.drop();
    await data.cleanup();
  }
}

void main();
