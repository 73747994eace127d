import type {
  RestorePointReference,
  RetainedRestorePoint,
  ScheduleDefinition,
  TaskExecution,
} from '@haven/plugin-sdk';
import { decideRetention, GFS_LEVELS } from '@haven/retention';
import type { ArchiveStore } from './archive';

export interface ArchiveRetentionOutcome {
  expired: RestorePointReference[];
  retained: RetainedRestorePoint[];
}

export function hasRetention(schedule: ScheduleDefinition | undefined): schedule is ScheduleDefinition {
  return (
    schedule !== undefined && (schedule.retention.keep !== undefined || schedule.retention.gfs !== undefined)
  );
}

/**
 * The schedule's retention (keep-N or GFS, the same decision as for restore points) over this job
 * and schedule's archives of one VM on one remote: expired archives are removed (manifest first,
 * then segments), kept ones reported with the GFS buckets they hold.
 */
export async function applyArchiveRetention(
  archives: ArchiveStore,
  remoteId: string,
  task: TaskExecution,
  schedule: ScheduleDefinition,
  vmUuid: string,
  signal?: AbortSignal,
): Promise<ArchiveRetentionOutcome> {
  const ofSchedule = (await archives.list({ vmUuid, ...(signal ? { signal } : {}) })).filter(
    ({ manifest }) => manifest.job?.id === task.job.id && manifest.schedule?.id === schedule.id,
  );
  const decision = decideRetention(
    ofSchedule.map(({ manifestKey, manifest }) => ({
      id: manifestKey,
      takenAt: new Date(manifest.takenAt),
      committedAt: new Date(manifest.createdAt),
    })),
    schedule.retention,
    schedule.timezone,
  );
  const expired: RestorePointReference[] = [];
  for (const manifestKey of decision.expire) {
    const archive = ofSchedule.find((candidate) => candidate.manifestKey === manifestKey);
    if (archive === undefined) continue;
    await archives.remove({ vmUuid, archiveId: archive.manifest.id }, signal);
    expired.push({ remoteId, manifestKey });
  }
  const levels = new Set<string>(GFS_LEVELS);
  const retained = [...decision.keep.entries()].map(([manifestKey, reasons]) => ({
    remoteId,
    manifestKey,
    gfsTags: reasons.filter((reason) => levels.has(reason)),
  }));
  return { expired, retained };
}
