import { DateTime } from 'luxon';

/** Long-term retention levels, finest first. */
export const GFS_LEVELS = ['daily', 'weekly', 'monthly', 'yearly'] as const;
export type GfsLevel = (typeof GFS_LEVELS)[number];

/**
 * What a schedule keeps of its restore points (per VM, per remote): the newest `keep`, or the
 * grandfather-father-son levels of `gfs`. The two are not combined on one schedule: they would keep
 * the same restore points under two rules (the user guide's warning).
 */
export interface RetentionPolicy {
  keep?: number;
  gfs?: Partial<Record<GfsLevel, number>>;
}

export interface RetentionCandidate {
  id: string;
  /** When the VM's snapshot was taken: what GFS buckets and `keep` go by. XAPI gives it to the second. */
  takenAt: Date;
  /** When the restore point was committed: the newer of two taken in the same second is the later. */
  committedAt: Date;
}

export interface RetentionDecision {
  /** Restore points kept, with the reasons each is kept: `latest`, `last-N`, and GFS levels. */
  keep: Map<string, string[]>;
  /** Restore points to expire, oldest first. */
  expire: string[];
}

export class RetentionPolicyError extends Error {
  readonly code = 'RETENTION_POLICY_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'RetentionPolicyError';
  }
}

/** The bucket a time falls in, in the policy's time zone: a day, an ISO week, a month or a year. */
export function gfsBucket(level: GfsLevel, takenAt: Date, timeZone: string): string {
  const local = DateTime.fromJSDate(takenAt, { zone: timeZone });
  switch (level) {
    case 'daily':
      return local.toFormat('yyyy-MM-dd');
    case 'weekly':
      return `${local.weekYear}-W${String(local.weekNumber).padStart(2, '0')}`;
    case 'monthly':
      return local.toFormat('yyyy-MM');
    case 'yearly':
      return local.toFormat('yyyy');
  }
}

export function checkRetentionPolicy(policy: RetentionPolicy, timeZone: string): void {
  if (!DateTime.now().setZone(timeZone).isValid)
    throw new RetentionPolicyError(`"${timeZone}" is not a known time zone`);
  if (policy.keep !== undefined && policy.gfs !== undefined)
    throw new RetentionPolicyError(
      'keep and gfs on one schedule would keep the same restore points twice: use one of them',
    );
  if (policy.keep !== undefined && (!Number.isInteger(policy.keep) || policy.keep < 1))
    throw new RetentionPolicyError(`keep must be a whole number of at least 1 (got ${policy.keep})`);
  for (const [level, count] of Object.entries(policy.gfs ?? {}))
    if (!Number.isInteger(count) || count < 1)
      throw new RetentionPolicyError(`gfs.${level} must be a whole number of at least 1 (got ${count})`);
  if (policy.keep === undefined && Object.keys(policy.gfs ?? {}).length === 0)
    throw new RetentionPolicyError('a retention policy needs keep or at least one gfs level');
}

/**
 * Decides which restore points a policy keeps. GFS keeps, for each level with count N, the oldest
 * restore point of each of the N most recent buckets that hold one (day, ISO week, month, year, in
 * `timeZone`); `keep` keeps the newest N. The newest restore point is always kept: it is the base
 * of the next incremental backup.
 */
export function decideRetention(
  points: readonly RetentionCandidate[],
  policy: RetentionPolicy,
  timeZone: string,
): RetentionDecision {
  checkRetentionPolicy(policy, timeZone);
  const newestFirst = [...points].sort(
    (a, b) =>
      b.takenAt.getTime() - a.takenAt.getTime() ||
      b.committedAt.getTime() - a.committedAt.getTime() ||
      (a.id < b.id ? 1 : -1),
  );
  const keep = new Map<string, string[]>();
  const tag = (id: string, reason: string) => keep.set(id, [...(keep.get(id) ?? []), reason]);
  const newest = newestFirst.at(0);
  if (newest) tag(newest.id, 'latest');
  if (policy.keep !== undefined)
    for (const point of newestFirst.slice(0, policy.keep)) tag(point.id, `last-${policy.keep}`);
  for (const level of GFS_LEVELS) {
    const count = policy.gfs?.[level];
    if (count === undefined) continue;
    // Oldest first, so the first point seen in a bucket is the one the bucket keeps.
    const oldestByBucket = new Map<string, RetentionCandidate>();
    for (const point of [...newestFirst].reverse()) {
      const bucket = gfsBucket(level, point.takenAt, timeZone);
      if (!oldestByBucket.has(bucket)) oldestByBucket.set(bucket, point);
    }
    const buckets = [...oldestByBucket.keys()].sort().reverse().slice(0, count);
    for (const bucket of buckets) {
      const point = oldestByBucket.get(bucket);
      if (point) tag(point.id, level);
    }
  }
  const expire = [...newestFirst]
    .reverse()
    .filter((point) => !keep.has(point.id))
    .map((point) => point.id);
  return { keep, expire };
}
