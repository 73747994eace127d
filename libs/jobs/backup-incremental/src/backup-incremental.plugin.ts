import type { JobPlanContext, JobPlugin, PlannedTask } from '@haven/plugin-sdk';
import {
  BACKUP_INCREMENTAL_SETTINGS_SCHEMA,
  backupSettings,
  checkSnapshotNameTemplate,
} from './backup-incremental.settings';
import { planVmTasks } from './vm-tasks.planner';
import { backupVmIncremental } from './vm-backup.executor';

export const BACKUP_INCREMENTAL_TASK = 'backup.incremental.vm';

/** One task per selected VM (see planVmTasks). */
export function planBackupIncremental(context: JobPlanContext): Promise<PlannedTask[]> {
  return planVmTasks(context, BACKUP_INCREMENTAL_TASK);
}

export const backupIncrementalPlugin: JobPlugin = {
  manifestVersion: 1,
  kind: 'job',
  type: 'backup.incremental',
  version: '1.0.0',
  description:
    'Incremental VM backup: snapshot, export only the blocks changed since the previous backup snapshot, ' +
    'store deduplicated restore points on every remote of the job',
  configSchema: BACKUP_INCREMENTAL_SETTINGS_SCHEMA,
  taskTypes: [BACKUP_INCREMENTAL_TASK],
  plan: planBackupIncremental,
  executors: { [BACKUP_INCREMENTAL_TASK]: backupVmIncremental },
  checkSettings: checkSnapshotNameTemplate,
  taskConcurrency: (settings) => backupSettings(settings).vmConcurrency,
  // The same `retries` as a VM's transfer: a silent pool at planning is retried as at transfer.
  planRetries: (settings) => backupSettings(settings).retries,
};
