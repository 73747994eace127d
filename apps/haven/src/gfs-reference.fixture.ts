import { DateTime } from 'luxon';
import type { BackupLab, RunBody } from './backup-lab.fixture';

/**
 * What long-term retention (GFS) must keep, written from its definition rather than from
 * libs/retention, and the daily runs the GFS end-to-end suites drive through the gateway.
 */
export const GFS_LEVELS = ['daily', 'weekly', 'monthly', 'yearly'] as const;
export type GfsLevel = (typeof GFS_LEVELS)[number];
export type GfsPolicy = Record<GfsLevel, number>;

/** 00:30 in `zone` on each of `days` days from `firstDay` (an ISO date). */
export function dailyBackupTimes(firstDay: string, days: number, zone: string): DateTime[] {
  const first = DateTime.fromISO(firstDay, { zone }).set({ hour: 0, minute: 30 });
  return Array.from({ length: days }, (_, day) => first.plus({ days: day }));
}

/** The calendar bucket of a time at a GFS level, read in the time's own zone. */
export function gfsBucketOf(level: GfsLevel, time: DateTime): string {
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
 * At each level, the first backup of each of the newest N calendar buckets; plus the newest
 * backup, always kept. Keyed by the backup's day (ISO date in its zone), valued by its levels.
 * Pruning after every run keeps the same set: a bucket's first backup was kept since it was taken.
 */
export function expectedGfsKept(times: readonly DateTime[], policy: GfsPolicy): Map<string, GfsLevel[]> {
  const kept = new Map<string, GfsLevel[]>();
  for (const level of GFS_LEVELS) {
    const firstOfBucket = new Map<string, DateTime>();
    for (const time of times) {
      const bucket = gfsBucketOf(level, time);
      if (!firstOfBucket.has(bucket)) firstOfBucket.set(bucket, time);
    }
    // Times go forward, so buckets were met oldest first.
    for (const time of [...firstOfBucket.values()].slice(-policy[level])) {
      const day = time.toISODate() ?? '';
      kept.set(day, [...(kept.get(day) ?? []), level]);
    }
  }
  const newest = times.at(-1)?.toISODate() ?? undefined;
  if (newest !== undefined && !kept.has(newest)) kept.set(newest, []);
  return kept;
}

/**
 * Runs `jobId` for `scheduleId` and waits for its end on the run's event stream, not by polling
 * (hundreds of runs: docs/development.md, "Traps").
 */
export async function runForSchedule(lab: BackupLab, jobId: string, scheduleId: string): Promise<RunBody> {
  const started = await lab
    .auth(lab.api().post(`/api/v1/jobs/${jobId}/run`))
    .send({ scheduleId })
    .expect(202);
  const events = await fetch(`${lab.baseUrl}/api/v1/runs/${started.body.runId}/events`, {
    headers: { authorization: `Bearer ${lab.admin}` },
  });
  if (events.status !== 200) throw new Error(`the run's event stream answered ${events.status}`);
  // The stream ends when the run does.
  await events.text();
  const run = await lab.auth(lab.api().get(`/api/v1/runs/${started.body.runId}`)).expect(200);
  return run.body as RunBody;
}

/** Every restore point the catalog lists for `jobId` (one page of 100 at most, checked). */
export async function catalogPointsOf<T>(lab: BackupLab, jobId: string): Promise<T[]> {
  const listed = await lab.auth(lab.api().get(`/api/v1/restore-points?jobId=${jobId}&limit=100`)).expect(200);
  if ((listed.body.nextCursor ?? null) !== null) throw new Error('more than 100 restore points listed');
  return listed.body.items as T[];
}

/**
 * A local remote in a fresh scratch folder and a job of `type` backing up the lab's VM to it, with
 * no compression (the GFS suites measure retention, not zstd or scrypt).
 */
export async function createPlainJob(
  lab: BackupLab,
  options: { type: string; jobName: string; remoteName: string; scratchPrefix: string },
): Promise<{ jobId: string; remoteFolder: string }> {
  const remoteFolder = await lab.scratch(options.scratchPrefix);
  const remote = await lab
    .auth(lab.api().post('/api/v1/remotes'))
    .send({ name: options.remoteName, type: 'local', settings: { path: remoteFolder } })
    .expect(201);
  const job = await lab
    .auth(lab.api().post('/api/v1/jobs'))
    .send({
      name: options.jobName,
      type: options.type,
      selection: { poolId: lab.poolId, mode: 'explicit', vms: [lab.vm.uuid] },
      remoteIds: [remote.body.id],
      settings: { compression: 'none' },
    })
    .expect(201);
  return { jobId: job.body.id as string, remoteFolder };
}

/**
 * One simulated day of a GFS suite: the simulator's clock set to `time`, the schedule's run
 * (which must succeed), then the catalog's restore points of the job, which must be exactly the
 * days `expectedGfsKept` keeps, each with its levels. `time` is appended to `taken`; the points
 * are returned for the suite's own checks.
 */
export async function runGfsDay<T extends { gfsTags: string[]; takenAt: string }>(
  lab: BackupLab,
  scope: { jobId: string; scheduleId: string; policy: GfsPolicy },
  time: DateTime,
  taken: DateTime[],
): Promise<T[]> {
  lab.simulator.setClock(time.toJSDate());
  const run = await runForSchedule(lab, scope.jobId, scope.scheduleId);
  const day = time.toISODate();
  expect([day, run.status, run.tasks[0]?.error ?? null]).toEqual([day, 'success', null]);
  taken.push(time);
  const points = await catalogPointsOf<T>(lab, scope.jobId);
  const dayOf = (iso: string): string => DateTime.fromISO(iso, { zone: time.zone }).toISODate() ?? '';
  const kept = new Map(points.map((point) => [dayOf(point.takenAt), point.gfsTags]));
  expect([day, points.length]).toEqual([day, kept.size]);
  expect([day, kept]).toEqual([day, expectedGfsKept(taken, scope.policy)]);
  return points;
}
