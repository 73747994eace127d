import { randomBytes, randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import type { DataSource } from 'typeorm';
import { type Bus, createBus } from '@haven/bus';
import { openCatalog, SecretBox } from '@haven/db';
import { JsonLogger } from '@haven/observability';
import { PluginRegistry } from '@haven/plugin-sdk';
import { JobResourceProvider, RemoteOpener } from '@haven/service-core';
import { createTestDatabase, describeIntegration } from '@haven/testing';
import { RunLauncher } from './run.launcher';
import { ScheduleTicker } from './schedule.ticker';

const ROOT = resolve(__dirname, '../../../..');

describeIntegration('schedule ticker with several schedulers on one catalog', ['postgres'], () => {
  let database: { url: string; drop: () => Promise<void> };
  const dataSources: DataSource[] = [];
  const buses: Bus[] = [];
  const tickers: ScheduleTicker[] = [];
  const tenantId = randomUUID();
  const jobId = randomUUID();
  const scheduleId = randomUUID();
  const silent = new JsonLogger('test', 'error', { write: () => true } as unknown as NodeJS.WritableStream);

  beforeAll(async () => {
    database = await createTestDatabase('haven_ticker');
    const plugins = PluginRegistry.load(['./examples/plugins/example-job'], ROOT);
    const secrets = new SecretBox(randomBytes(32));
    for (let i = 0; i < 2; i++) {
      const dataSource = await openCatalog({ kind: 'postgres', url: database.url }, { migrate: i === 0 });
      const bus = await createBus({ driver: 'memory', name: `scheduler-${i}` });
      const resources = new JobResourceProvider(dataSource, new RemoteOpener(plugins, secrets), secrets);
      tickers.push(
        new ScheduleTicker(dataSource, new RunLauncher(dataSource, bus, plugins, silent, resources), silent),
      );
      dataSources.push(dataSource);
      buses.push(bus);
    }
    const db = dataSources[0];
    await db.query(`INSERT INTO tenants (id, name) VALUES ($1, 'acme')`, [tenantId]);
    await db.query(
      `INSERT INTO jobs (id, tenant_id, name, type, selection, remote_ids, settings)
       VALUES ($1, $2, 'nightly', 'example.echo', '{"mode":"explicit","vms":["vm-1"]}', '{}', '{"message":"hi"}')`,
      [jobId, tenantId],
    );
    // Every minute, last due 3.5 minutes ago: this tick plus 3 later ones passed with no scheduler.
    await db.query(
      `INSERT INTO schedules (id, tenant_id, job_id, name, cron, timezone, retention, next_fire_at)
       VALUES ($1, $2, $3, 'every minute', '* * * * *', 'Europe/Paris', '{"keep":3}', date_trunc('minute', now()) - interval '3 minutes')`,
      [scheduleId, tenantId, jobId],
    );
  });

  afterAll(async () => {
    for (const bus of buses) await bus.close();
    for (const dataSource of dataSources) await dataSource.destroy();
    await database.drop();
  });

  it('fires a due tick exactly once across schedulers and reports the ticks missed meanwhile', async () => {
    const now = new Date();
    const [first, second] = await Promise.all(tickers.map((ticker) => ticker.tick(now)));
    const fired = [...first, ...second];
    expect(fired).toHaveLength(1);
    expect(fired[0]).toMatchObject({ id: scheduleId, jobId, missedTicks: 3 });

    const runs: { trigger: string; schedule_id: string; progress: { note?: string } }[] =
      await dataSources[0].query(`SELECT trigger, schedule_id, progress FROM runs WHERE job_id = $1`, [
        jobId,
      ]);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ trigger: 'schedule', schedule_id: scheduleId });
    expect(runs[0].progress.note).toBe('3 earlier tick(s) were missed while no scheduler ran');

    const schedules: { next_fire_at: Date; last_fired_at: Date }[] = await dataSources[0].query(
      `SELECT next_fire_at, last_fired_at FROM schedules WHERE id = $1`,
      [scheduleId],
    );
    const schedule = schedules[0];
    expect(schedule.next_fire_at.getTime()).toBeGreaterThan(now.getTime());
    expect(schedule.next_fire_at.getTime() - now.getTime()).toBeLessThanOrEqual(60_000);

    // Nothing is due any more, whoever looks.
    expect(await tickers[1].tick(now)).toEqual([]);
  });

  it('does not fire a disabled schedule', async () => {
    await dataSources[0].query(
      `UPDATE schedules SET enabled = false, next_fire_at = now() - interval '1 minute' WHERE id = $1`,
      [scheduleId],
    );
    expect(await tickers[0].tick(new Date())).toEqual([]);
  });
});
