import { DateTime } from 'luxon';
import type request from 'supertest';
import localRemote from '@haven/remote-local';
import { openRepository } from '@haven/repository';
import { type BackupLab, type RunBody, startBackupLab } from '../../../../apps/haven/src/backup-lab.fixture';

const MiB = 1024 * 1024;
const ZONE = 'Europe/Paris';
const LEVELS = ['daily', 'weekly', 'monthly', 'yearly'] as const;
type Level = (typeof LEVELS)[number];
const POLICY: Record<Level, number> = { daily: 7, weekly: 4, monthly: 12, yearly: 1 };
const FIRST_DAY = '2025-03-15';
const DAYS = 365;

/**
 * 00:30 in Paris each day: 23:30 or 22:30 UTC the day before, so a day, week, month or year
 * counted in UTC instead of the schedule's zone keeps other restore points. The year crosses both
 * daylight-saving changes, a new year, and an ISO week (2026-W01) that starts in December.
 */
function backupTimes(): DateTime[] {
  const first = DateTime.fromISO(FIRST_DAY, { zone: ZONE }).set({ hour: 0, minute: 30 });
  return Array.from({ length: DAYS }, (_, day) => first.plus({ days: day }));
}

/** The calendar bucket of a time at a GFS level, read in the schedule's zone. */
function bucketOf(level: Level, time: DateTime): string {
  switch (level) {
    case 'daily':
      return time.toISODate() ?? '';
    case 'weekly':
      return `${time.weekYear}-W${time.weekNumber}`;
    case 'monthly':
      return `${time.year}-${time.month}`;
    case 'yearly':
      return String(time.year);
  }
}

/**
 * The reference, written from the definition and not from libs/retention: at each level, the
 * first backup of each of the newest N calendar buckets; plus the newest backup, always kept as
 * the base of the next incremental. Keyed by the backup's day in Paris, valued by its GFS levels.
 * Pruning after every run keeps the same set: a bucket's first backup was kept since it was taken.
 */
function expectedKept(times: readonly DateTime[]): Map<string, Level[]> {
  const kept = new Map<string, Level[]>();
  for (const level of LEVELS) {
    const firstOfBucket = new Map<string, DateTime>();
    for (const time of times) {
      const bucket = bucketOf(level, time);
      if (!firstOfBucket.has(bucket)) firstOfBucket.set(bucket, time);
    }
    // Times go forward, so buckets were met oldest first.
    for (const time of [...firstOfBucket.values()].slice(-POLICY[level])) {
      const day = time.toISODate() ?? '';
      kept.set(day, [...(kept.get(day) ?? []), level]);
    }
  }
  const newest = times.at(-1)?.toISODate() ?? undefined;
  if (newest !== undefined && !kept.has(newest)) kept.set(newest, []);
  return kept;
}

interface CatalogPoint {
  id: string;
  gfsTags: string[];
  takenAt: string;
  manifestKey?: string;
}

// 365 runs: each is waited for on its event stream, not by polling (docs/development.md, "Traps").
describe('GFS retention over a simulated year of daily backups (simulator clock)', () => {
  let lab: BackupLab;
  let remoteFolder = '';
  let scheduleId = '';
  let jobId = '';
  const taken: DateTime[] = [];
  const api = () => lab.api();
  const auth = (req: request.Test) => lab.auth(req);
  const parisDay = (iso: string) => DateTime.fromISO(iso, { zone: ZONE }).toISODate() ?? '';

  beforeAll(async () => {
    lab = await startBackupLab({
      seed: 'gfs-year',
      passphrase: 'gfs year lab passphrase',
      diskSize: 4 * MiB,
    });
    // A plain remote and no compression: 365 runs of a tiny disk measure the pipeline, not the
    // passphrase's scrypt (once per run) or zstd. Encryption has its own end-to-end suites.
    remoteFolder = await lab.scratch('haven-gfs-remote-');
    const remote = await auth(api().post('/api/v1/remotes'))
      .send({ name: 'long-term', type: 'local', settings: { path: remoteFolder } })
      .expect(201);
    const job = await auth(api().post('/api/v1/jobs'))
      .send({
        name: 'long-term',
        type: 'backup.incremental',
        selection: { poolId: lab.poolId, mode: 'explicit', vms: [lab.vm.uuid] },
        remoteIds: [remote.body.id],
        settings: { compression: 'none' },
      })
      .expect(201);
    jobId = job.body.id;
  }, 120_000);

  afterAll(async () => {
    await (lab as BackupLab | undefined)?.close();
  });

  /** Runs the job for the schedule and waits for the end on the run's event stream (no polling). */
  async function runForSchedule(): Promise<RunBody> {
    const started = await auth(api().post(`/api/v1/jobs/${jobId}/run`))
      .send({ scheduleId })
      .expect(202);
    const events = await fetch(`${lab.baseUrl}/api/v1/runs/${started.body.runId}/events`, {
      headers: { authorization: `Bearer ${lab.admin}` },
    });
    expect(events.status).toBe(200);
    // The stream ends when the run does.
    await events.text();
    const run = await auth(api().get(`/api/v1/runs/${started.body.runId}`)).expect(200);
    return run.body as RunBody;
  }

  async function catalogPoints(): Promise<CatalogPoint[]> {
    const listed = await auth(api().get(`/api/v1/restore-points?jobId=${jobId}&limit=100`)).expect(200);
    expect(listed.body.nextCursor ?? null).toBeNull();
    return listed.body.items as CatalogPoint[];
  }

  it('refuses a schedule that combines keep with GFS, on creation and on change, saying why', async () => {
    const refused = await auth(api().post('/api/v1/schedules'))
      .send({
        jobId,
        name: 'both',
        cron: '30 0 * * *',
        timezone: ZONE,
        retention: { keep: 7, gfs: { daily: 7 } },
      })
      .expect(400);
    expect(refused.body.errors).toEqual([
      { field: 'retention', message: expect.stringMatching(/keep the same restore points twice/) },
    ]);
    const schedule = await auth(api().post('/api/v1/schedules'))
      .send({
        jobId,
        name: 'nightly long-term',
        cron: '30 0 * * *',
        timezone: ZONE,
        // Fired by hand below with the simulator's clock, never by the real one.
        enabled: false,
        retention: { gfs: POLICY },
      })
      .expect(201);
    scheduleId = schedule.body.id;
    const changed = await auth(api().patch(`/api/v1/schedules/${scheduleId}`))
      .send({ retention: { keep: 3, gfs: POLICY } })
      .expect(400);
    expect(changed.body.errors).toEqual([
      { field: 'retention', message: expect.stringMatching(/use gfs alone .* or keep alone/) },
    ]);
    const unchanged = await auth(api().get(`/api/v1/schedules/${scheduleId}`)).expect(200);
    expect(unchanged.body.retention).toEqual({ gfs: POLICY });
  });

  it('after each daily backup, the catalog keeps exactly the reference set with its GFS tags', async () => {
    const started = Date.now();
    const cpu = process.cpuUsage();
    for (const time of backupTimes()) {
      lab.simulator.setClock(time.toJSDate());
      const run = await runForSchedule();
      expect([time.toISODate(), run.status, run.tasks[0]?.error ?? null]).toEqual([
        time.toISODate(),
        'success',
        null,
      ]);
      taken.push(time);
      if (taken.length % 73 === 0)
        process.stdout.write(
          `gfs-year: ${taken.length} runs after ${((Date.now() - started) / 1000).toFixed(0)} s\n`,
        );
      const expected = expectedKept(taken);
      const points = await catalogPoints();
      const kept = new Map(points.map((point) => [parisDay(point.takenAt), point.gfsTags]));
      expect([time.toISODate(), points.length]).toEqual([time.toISODate(), kept.size]);
      expect([time.toISODate(), kept]).toEqual([time.toISODate(), expected]);
    }
    const seconds = (Date.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    const cpuSeconds = (used.user + used.system) / 1e6;
    process.stdout.write(
      `gfs-year: ${DAYS} daily backup runs in ${seconds.toFixed(1)} s wall, ${cpuSeconds.toFixed(1)} s CPU ` +
        `(${((seconds / DAYS) * 1000).toFixed(0)} ms wall, ${((cpuSeconds / DAYS) * 1000).toFixed(0)} ms CPU per run)\n`,
    );
  }, 1_800_000);

  it('ends with the set a person reads off the calendar', () => {
    const expected = expectedKept(taken);
    const firsts = [
      '2025-04-01',
      '2025-05-01',
      '2025-06-01',
      '2025-07-01',
      '2025-08-01',
      '2025-09-01',
      '2025-10-01',
      '2025-11-01',
      '2025-12-01',
      '2026-01-01',
      '2026-02-01',
      '2026-03-01',
    ];
    // Mondays of the last four ISO weeks, and the last seven days (up to Saturday 14 March 2026).
    const mondays = ['2026-02-16', '2026-02-23', '2026-03-02', '2026-03-09'];
    const lastWeek = [
      '2026-03-08',
      '2026-03-09',
      '2026-03-10',
      '2026-03-11',
      '2026-03-12',
      '2026-03-13',
      '2026-03-14',
    ];
    expect([...expected.keys()].sort()).toEqual([...new Set([...firsts, ...mondays, ...lastWeek])].sort());
    expect(expected.get('2026-01-01')).toEqual(['monthly', 'yearly']);
    expect(expected.get('2026-03-09')).toEqual(['daily', 'weekly']);
    expect(expected.get('2026-03-02')).toEqual(['weekly']);
    expect(expected.get('2025-04-01')).toEqual(['monthly']);
    expect(expected.get('2026-03-14')).toEqual(['daily']);
  });

  it('the remote holds exactly the kept restore points, and each reads back', async () => {
    const points = await catalogPoints();
    const store = await localRemote.create({ path: remoteFolder }, { name: 'check' });
    try {
      const repository = await openRepository(store);
      const onRemote = await repository.listRestorePoints({ vmUuid: lab.vm.uuid });
      const days = onRemote
        .map((summary) => {
          const at = summary.manifest.attributes?.['snapshotTakenAt'];
          return parisDay(typeof at === 'string' ? at : summary.manifest.createdAt);
        })
        .sort();
      expect(days).toEqual([...expectedKept(taken).keys()].sort());
      expect(onRemote).toHaveLength(points.length);
      // Only kept manifests remain: the rest of the year is gone from the remote, not just hidden.
      expect(await repository.listRestorePointIds()).toHaveLength(points.length);
      const report = await repository.verify();
      expect(report).toMatchObject({
        ok: true,
        damagedChunks: [],
        missingChunks: [],
        brokenRestorePoints: [],
      });
    } finally {
      await store.close();
    }
  }, 120_000);
});
