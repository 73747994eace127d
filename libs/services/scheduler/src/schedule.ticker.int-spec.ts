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

describeIntegration('schedule ticker with a run whose start is slow', ['postgres'], () => {
  let database: { url: string; drop: () => Promise<void> };
  let dataSource: DataSource;
  const tenantId = randomUUID();
  const slowJob = randomUUID();
  const quickJob = randomUUID();
  const laterJob = randomUUID();
  const silent = new JsonLogger('test', 'error', { write: () => true } as unknown as NodeJS.WritableStream);

  beforeAll(async () => {
    database = await createTestDatabase('haven_ticker_slow');
    dataSource = await openCatalog({ kind: 'postgres', url: database.url }, { migrate: true });
    await dataSource.query(`INSERT INTO tenants (id, name) VALUES ($1, 'acme')`, [tenantId]);
    for (const [id, name, due] of [
      [slowJob, 'slow', '1 minute'],
      [quickJob, 'quick', '1 minute'],
      [laterJob, 'later', '-10 minutes'],
    ] as const) {
      await dataSource.query(
        `INSERT INTO jobs (id, tenant_id, name, type, selection, remote_ids, settings)
         VALUES ($1, $2, $3, 'example.echo', '{"mode":"explicit","vms":["vm-1"]}', '{}', '{}')`,
        [id, tenantId, name],
      );
      // `later` is due 10 minutes from now: only a later tick fires it.
      await dataSource.query(
        `INSERT INTO schedules (id, tenant_id, job_id, name, cron, timezone, retention, next_fire_at)
         VALUES ($1, $2, $3, $4, '0 0 1 1 *', 'UTC', '{"keep":1}', now() - interval '${due}')`,
        [randomUUID(), tenantId, id, name],
      );
    }
  });

  afterAll(async () => {
    await dataSource.destroy();
    await database.drop();
  });

  it('starts the other due runs, and fires later ticks, while one start is still planning', async () => {
    let releaseSlow: () => void = () => undefined;
    const slowPlanning = new Promise<void>((resolve) => (releaseSlow = resolve));
    const started: string[] = [];
    const finished: string[] = [];
    /** Resolves when the start of `jobId` has finished (whatever else is still planning). */
    const finishing = new Map<string, () => void>();
    const finishedStart = (jobId: string): Promise<void> =>
      new Promise((resolve) => finishing.set(jobId, resolve));
    // The launcher's part is what is held here: a start that takes as long as the test says.
    const launcher = {
      start: async ({ jobId }: { jobId: string }) => {
        started.push(jobId);
        if (jobId === slowJob) await slowPlanning;
        finished.push(jobId);
        finishing.get(jobId)?.();
      },
    } as unknown as RunLauncher;
    const ticker = new ScheduleTicker(dataSource, launcher, silent);

    const quickDone = finishedStart(quickJob);
    const fired = await ticker.fireDue(new Date());
    expect(fired.map((claimed) => claimed.jobId).sort()).toEqual([slowJob, quickJob].sort());
    await quickDone;
    expect(finished).toEqual([quickJob]);

    // The next tick, 11 minutes on, is not held up by the planning still under way.
    const laterDone = finishedStart(laterJob);
    const next = await ticker.fireDue(new Date(Date.now() + 11 * 60_000));
    expect(next.map((claimed) => claimed.jobId)).toEqual([laterJob]);
    await laterDone;
    expect(finished).toEqual([quickJob, laterJob]);

    releaseSlow();
    await ticker.startsSettled();
    expect(finished.sort()).toEqual([slowJob, quickJob, laterJob].sort());
    expect(started).toHaveLength(3);
  });
});
