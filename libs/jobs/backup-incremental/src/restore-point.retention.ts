import type {
  RestorePointReference,
  RetainedRestorePoint,
  ScheduleDefinition,
  TaskExecution,
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
    points.map((manifest) => ({ id: manifest.id, takenAt: takenAt(manifest) })),
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
