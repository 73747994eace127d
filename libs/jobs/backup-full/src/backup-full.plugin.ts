import type { JobPlanContext, JobPlugin, PlannedTask } from '@haven/plugin-sdk';
import { checkSnapshotNameTemplate, planVmTasks } from '@haven/job-backup-incremental';
import { BACKUP_FULL_SETTINGS_SCHEMA, backupFullSettings } from './backup-full.settings';
import { backupVmFull } from './vm-archive.executor';

export const BACKUP_FULL_TASK = 'backup.full.vm';

/** One task per VM, with backup.incremental's selection (see planVmTasks). */
export function planBackupFull(context: JobPlanContext): Promise<PlannedTask[]> {
  return planVmTasks(context, BACKUP_FULL_TASK);
}

export const backupFullPlugin: JobPlugin = {
  manifestVersion: 1,
  kind: 'job',
  type: 'backup.full',
  version: '1.0.0',
  description:
    'Full VM backup: snapshot, export the VM as an XVA compressed by the host, store it as an ' +
    'independent archive (sealed segments when the repository is encrypted) on every remote of the job',
  configSchema: BACKUP_FULL_SETTINGS_SCHEMA,
  taskTypes: [BACKUP_FULL_TASK],
  plan: planBackupFull,
  executors: { [BACKUP_FULL_TASK]: backupVmFull },
  checkSettings: checkSnapshotNameTemplate,
  taskConcurrency: (settings) => backupFullSettings(settings).vmConcurrency,
  // The same `retries` as a VM's transfer: a silent pool at planning is retried as at transfer.
  planRetries: (settings) => backupFullSettings(settings).retries,
};
