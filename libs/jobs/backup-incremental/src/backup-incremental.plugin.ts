import type { JobPlanContext, JobPlugin, PlannedTask } from '@haven/plugin-sdk';
import { XapiPool, XapiNotFoundError, type VmInfo } from '@haven/xapi';
import { BACKUP_INCREMENTAL_SETTINGS_SCHEMA, backupSettings } from './backup-incremental.settings';
import { isExcludedAlways, parseSelection, selectVms } from './vm.selection';
import { backupVmIncremental } from './vm-backup.executor';

export const BACKUP_INCREMENTAL_TASK = 'backup.incremental.vm';

/** The catalog lock a VM's backup task holds: one backup of a VM at a time, whatever the job. */
export function vmLockKey(vmUuid: string): string {
  return `vm:${vmUuid}`;
}

function taskFor(vm: Pick<VmInfo, 'uuid' | 'name'>): PlannedTask {
  return {
    type: BACKUP_INCREMENTAL_TASK,
    subject: vm.name,
    input: { vm: vm.uuid, vmName: vm.name },
    lockKey: vmLockKey(vm.uuid),
  };
}

/**
 * One task per VM. Explicit mode keeps the listed VMs (a VM gone from the pool still gets a task,
 * which fails naming it); smart mode selects at each run. Either way, VMs tagged `no-backup` and
 * VMs Haven created are never backed up.
 */
export async function planBackupIncremental(context: JobPlanContext): Promise<PlannedTask[]> {
  const selection = parseSelection(context.job.selection);
  const access = await context.resources.pool(selection.poolId);
  const pool = await XapiPool.connect(
    {
      url: access.url,
      username: access.username,
      password: access.password,
      allowUnauthorized: access.allowUnauthorized,
    },
    context.signal,
  );
  try {
    if (selection.mode === 'smart') return selectVms(await pool.listVms(), selection.smart).map(taskFor);
    const tasks: PlannedTask[] = [];
    for (const uuid of selection.vms) {
      let vm: VmInfo;
      try {
        vm = await pool.getVm(uuid);
      } catch (error) {
        if (!(error instanceof XapiNotFoundError)) throw error;
        tasks.push({
          type: BACKUP_INCREMENTAL_TASK,
          subject: uuid,
          input: { vm: uuid },
          lockKey: vmLockKey(uuid),
        });
        continue;
      }
      if (!isExcludedAlways(vm)) tasks.push(taskFor(vm));
    }
    return tasks;
  } finally {
    await pool.close();
  }
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
  taskConcurrency: (settings) => backupSettings(settings).vmConcurrency,
};
