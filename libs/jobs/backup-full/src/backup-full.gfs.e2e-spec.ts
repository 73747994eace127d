import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
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
  type GfsLevel,
  type GfsPolicy,
  runGfsDay,
} from '../../../../apps/haven/src/gfs-reference.fixture';
import { ArchiveStore, parseArchiveManifestKey } from './archive';

const MiB = 1024 * 1024;
const ZONE = 'Europe/Paris';
const POLICY: GfsPolicy = { daily: 3, weekly: 2, monthly: 2, yearly: 1 };
const FIRST_DAY = '2025-12-20';
const DAYS = 45;
/**
 * 00:30 in Paris each day, from Saturday 20 December 2025 to Monday 2 February 2026: 23:30 UTC
 * the day before, so buckets counted in UTC rather than the schedule's zone keep other archives.
 * Crosses two months, a year, and an ISO week (2026-W01) that starts in December; every level
 * lets go of an archive on the way (20 December is the year's until 1 January, a month's until 1
 * February).
 */
const backupTimes = () => dailyBackupTimes(FIRST_DAY, DAYS, ZONE);
const expectedKept = (times: readonly DateTime[]) => expectedGfsKept(times, POLICY);

interface CatalogPoint {
  id: string;
  kind: string;
  gfsTags: string[];
  takenAt: string;
}

// backup.full applies a schedule's long-term retention to its archives: after each daily run
// (simulator clock), the catalog and the remote hold exactly the archives GFS keeps, tagged.
describe('GFS retention of backup.full archives over simulated weeks (simulator clock)', () => {
  let lab: BackupLab;
  let remoteFolder = '';
  let jobId = '';
  let scheduleId = '';
  const taken: DateTime[] = [];
  const api = () => lab.api();
  const auth = (req: request.Test) => lab.auth(req);
  const parisDay = (iso: string) => DateTime.fromISO(iso, { zone: ZONE }).toISODate() ?? '';

  beforeAll(async () => {
    lab = await startBackupLab({
      seed: 'backup-full-gfs',
      passphrase: 'lab passphrase unused here',
      diskSize: 4 * MiB,
      plugins: ['@haven/remote-local', '@haven/job-backup-incremental', '@haven/job-backup-full'],
    });
    ({ jobId, remoteFolder } = await createPlainJob(lab, {
      type: 'backup.full',
      jobName: 'nightly full',
      remoteName: 'archives',
      scratchPrefix: 'haven-full-gfs-remote-',
    }));
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
    scheduleId = schedule.body.id as string;
  }, 120_000);

  afterAll(async () => {
    await (lab as BackupLab | undefined)?.close();
  });

  const catalogPoints = () => catalogPointsOf<CatalogPoint>(lab, jobId);

  it('after each daily run, the catalog keeps exactly the archives GFS keeps, with their levels', async () => {
    const started = Date.now();
    for (const time of backupTimes()) {
      const points = await runGfsDay<CatalogPoint>(lab, { jobId, scheduleId, policy: POLICY }, time, taken);
      expect(points.every((point) => point.kind === 'full')).toBe(true);
    }
    lab.simulator.setClock(null);
    process.stdout.write(
      `backup-full gfs: ${DAYS} daily runs in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
    );
  }, 600_000);

  it('ends with the set a person reads off the calendar', () => {
    // The year's and the last two months' first archives (1 January, 1 February), the Mondays of
    // the last two ISO weeks, the last three days.
    expect(expectedKept(taken)).toEqual(
      new Map<string, GfsLevel[]>([
        ['2026-01-01', ['monthly', 'yearly']],
        ['2026-01-26', ['weekly']],
        ['2026-01-31', ['daily']],
        ['2026-02-01', ['daily', 'monthly']],
        ['2026-02-02', ['daily', 'weekly']],
      ]),
    );
  });

  it('the remote holds exactly the kept archives, each as committed, and no folder of an expired one', async () => {
    const points = await catalogPoints();
    const store = await localRemote.create({ path: remoteFolder }, { name: 'check' });
    try {
      const archives = ArchiveStore.forRepository(await openRepository(store));
      const listed = await archives.list({ vmUuid: lab.vm.uuid });
      expect(listed.map(({ manifest }) => parisDay(manifest.takenAt)).sort()).toEqual(
        [...expectedKept(taken).keys()].sort(),
      );
      expect(listed.every(({ manifest }) => manifest.schedule?.id === scheduleId)).toBe(true);
      // Expired archives are gone whole (segments too), not just their manifests.
      const kept = listed.map(({ manifestKey }) => parseArchiveManifestKey(manifestKey)?.archiveId).sort();
      expect((await readdir(join(remoteFolder, 'archives', lab.vm.uuid))).sort()).toEqual(kept);
      expect(listed).toHaveLength(points.length);
    } finally {
      await store.close();
    }
  }, 60_000);
});
