import type { DataSource } from 'typeorm';
import { JobEntity, ScheduleEntity } from '@haven/db';
import type { JobDefinition, ScheduleDefinition } from '@haven/plugin-sdk';

/** The job as planners and executors see it, read tenant-scoped from the catalog. */
export async function loadJobDefinition(
  dataSource: DataSource,
  tenantId: string,
  jobId: string,
): Promise<JobDefinition | null> {
  const job = await dataSource.getRepository(JobEntity).findOneBy({ id: jobId, tenantId });
  if (!job) return null;
  return {
    id: job.id,
    tenantId: job.tenantId,
    name: job.name,
    type: job.type,
    selection: job.selection,
    remoteIds: job.remoteIds,
    settings: job.settings,
  };
}

/** The schedule a run belongs to, as executors see it (its retention). */
export async function loadScheduleDefinition(
  dataSource: DataSource,
  tenantId: string,
  scheduleId: string,
): Promise<ScheduleDefinition | undefined> {
  const schedule = await dataSource.getRepository(ScheduleEntity).findOneBy({ id: scheduleId, tenantId });
  if (!schedule) return undefined;
  return {
    id: schedule.id,
    name: schedule.name,
    timezone: schedule.timezone,
    retention: schedule.retention,
  };
}
