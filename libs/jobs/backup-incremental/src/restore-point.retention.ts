import type {
  CommittedRestorePoint,
  RemoteAccess,
  RestorePointReference,
  RetainedRestorePoint,
  ScheduleDefinition,
  TaskExecution,
  TaskExecutionContext,
} from '@haven/plugin-sdk';
import { manifestKey, type Repository, type RestorePointManifest } from '@haven/repository';
import { decideRetention, GFS_LEVELS } from '@haven/retention';

export interface RetentionOutcome {
  expired: RestorePointReference[];
  retained: RetainedRestorePoint[];
}

/** When the VM's disks were captured: the snapshot time the writer recorded, else the manifest's. */
function takenAt(manifest: RestorePointManifest): Date {
  const snapshotTime = manifest.attributes?.['snapshotTakenAt'];
  return new Date(typeof snapshotTime === 'string' ? snapshotTime : manifest.createdAt);
}

export function hasRetention(schedule: ScheduleDefinition | undefined): schedule is ScheduleDefinition {
  return (
    schedule !== undefined && (schedule.retention.keep !== undefined || schedule.retention.gfs !== undefined)
  );
}

/**
 * Applies the schedule's retention to this job's restore points of one VM on one repository:
 * expired ones are deleted (manifest and indexes only; their chunks wait for garbage collection),
 * kept ones are reported with the GFS buckets they hold.
 */
export async function applyRetention(
  repository: Repository,
  remoteId: string,
  task: TaskExecution,
  schedule: ScheduleDefinition,
  vmUuid: string,
  signal?: AbortSignal,
): Promise<RetentionOutcome> {
  const points = (await repository.listRestorePoints({ vmUuid, ...(signal ? { signal } : {}) }))
    .map((summary) => summary.manifest)
    .filter((manifest) => manifest.job?.id === task.job.id && manifest.schedule?.id === schedule.id);
  const decision = decideRetention(
    points.map((manifest) => ({
      id: manifest.id,
      takenAt: takenAt(manifest),
      committedAt: new Date(manifest.committedAt),
    })),
    schedule.retention,
    schedule.timezone,
  );
  const expired: RestorePointReference[] = [];
  for (const id of decision.expire) {
    await repository.deleteRestorePoint(id);
    expired.push({ remoteId, manifestKey: manifestKey(id) });
  }
  const levels = new Set<string>(GFS_LEVELS);
  const retained = [...decision.keep.entries()].map(([id, reasons]) => ({
    remoteId,
    manifestKey: manifestKey(id),
    gfsTags: reasons.filter((reason) => levels.has(reason)),
  }));
  return { expired, retained };
}

/** What a VM backup task reports of retention, filled in by `retainOnEveryRemote`. */
export interface RetentionReport {
  restorePoints: CommittedRestorePoint[];
  expiredRestorePoints?: RestorePointReference[];
  retainedRestorePoints?: RetainedRestorePoint[];
}

/**
 * A schedule's retention on every remote of a task, after its new restore points are committed:
 * `apply` runs per remote; a failure there does not undo the backup (it is logged, and the next run
 * applies retention again). The new restore points get the GFS buckets they hold.
 */
export async function retainOnEveryRemote<Target extends { access: RemoteAccess }>(
  result: RetentionReport,
  targets: readonly Target[],
  context: TaskExecutionContext,
  apply: (target: Target) => Promise<RetentionOutcome>,
): Promise<void> {
  const expired: RestorePointReference[] = [];
  const retained: RetainedRestorePoint[] = [];
  for (const target of targets) {
    try {
      const outcome = await apply(target);
      expired.push(...outcome.expired);
      retained.push(...outcome.retained);
    } catch (error) {
      context.log('warn', `retention on remote ${target.access.name} failed; the next run applies it again`, {
        error: String(error),
      });
    }
  }
  for (const point of result.restorePoints) {
    const kept = retained.find((r) => r.remoteId === point.remoteId && r.manifestKey === point.manifestKey);
    if (kept) point.gfsTags = kept.gfsTags;
  }
  result.expiredRestorePoints = expired;
  result.retainedRestorePoints = retained;
}
