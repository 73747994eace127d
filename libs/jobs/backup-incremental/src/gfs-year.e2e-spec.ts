import { DateTime } from 'luxon';
import type request from 'supertest';
import localRemote from '@haven/remote-local';
import { openRepository } from '@haven/repository';
import { type BackupLab, startBackupLab } from '../../../../apps/haven/src/backup-lab.fixture';
import {
  catalogPointsOf,
  createPlainJob,
  dailyBackupTimes,
  expectedGfsKept,
  type GfsPolicy,
  runGfsDay,
} from '../../../../apps/haven/src/gfs-reference.fixture';

const MiB = 1024 * 1024;
const ZONE = 'Europe/Paris';
const POLICY: GfsPolicy = { daily: 7, weekly: 4, monthly: 12, yearly: 1 };
const FIRST_DAY = '2025-03-15';
const DAYS = 365;
/**
 * 00:30 in Paris each day: 23:30 or 22:30 UTC the day before, so a day, week, month or year
 * counted in UTC instead of the schedule's zone keeps other restore points. The year crosses both
 * daylight-saving changes, a new year, and an ISO week (2026-W01) that starts in December.
 */
const backupTimes = () => dailyBackupTimes(FIRST_DAY, DAYS, ZONE);
const expectedKept = (times: readonly DateTime[]) => expectedGfsKept(times, POLICY);

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
    // 365 runs of a tiny disk measure the pipeline, not the passphrase's scrypt (once per run) or
    // zstd. Encryption has its own end-to-end suites.
    ({ jobId, remoteFolder } = await createPlainJob(lab, {
      type: 'backup.incremental',
      jobName: 'long-term',
      remoteName: 'long-term',
      scratchPrefix: 'haven-gfs-remote-',
    }));
  }, 120_000);

  afterAll(async () => {
    await (lab as BackupLab | undefined)?.close();
  });

  const catalogPoints = () => catalogPointsOf<CatalogPoint>(lab, jobId);

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
      await runGfsDay<CatalogPoint>(lab, { jobId, scheduleId, policy: POLICY }, time, taken);
      if (taken.length % 73 === 0)
        process.stdout.write(
          `gfs-year: ${taken.length} runs after ${((Date.now() - started) / 1000).toFixed(0)} s\n`,
        );
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
