import type { JobPlanContext, JobPlugin, PlannedTask } from '@haven/plugin-sdk';
import { isExcludedAlways, parseSelection, selectVms, vmLockKey } from '@haven/job-backup-incremental';
import { XapiNotFoundError, XapiPool, type VmInfo } from '@haven/xapi';
import { BACKUP_FULL_SETTINGS_SCHEMA, backupFullSettings } from './backup-full.settings';
import { backupVmFull } from './vm-archive.executor';

export const BACKUP_FULL_TASK = 'backup.full.vm';

function taskFor(vm: Pick<VmInfo, 'uuid' | 'name'>): PlannedTask {
  return {
    type: BACKUP_FULL_TASK,
    subject: vm.name,
    input: { vm: vm.uuid, vmName: vm.name },
    lockKey: vmLockKey(vm.uuid),
  };
}

/**
 * One task per VM, with backup.incremental's selection: explicit VMs (a VM gone from the pool
 * still gets a task, which fails naming it) or smart mode at each run; VMs tagged `no-backup` and
 * VMs Haven created are never backed up.
 */
export async function planBackupFull(context: JobPlanContext): Promise<PlannedTask[]> {
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
        tasks.push({ type: BACKUP_FULL_TASK, subject: uuid, input: { vm: uuid }, lockKey: vmLockKey(uuid) });
        continue;
      }
      if (!isExcludedAlways(vm)) tasks.push(taskFor(vm));
    }
    return tasks;
  } finally {
    await pool.close();
  }
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
  taskConcurrency: (settings) => backupFullSettings(settings).vmConcurrency,
};
