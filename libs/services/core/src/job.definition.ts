import type { DataSource } from 'typeorm';
import { JobEntity } from '@haven/db';
import type { JobDefinition } from '@haven/plugin-sdk';

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
