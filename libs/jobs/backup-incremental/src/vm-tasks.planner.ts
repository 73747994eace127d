import type { JobPlanContext, PlannedTask } from '@haven/plugin-sdk';
import { withPoolConnection, XapiNotFoundError, type VmInfo } from '@haven/xapi';
import { isExcludedAlways, parseSelection, selectVms } from './vm.selection';

/** The catalog lock a VM's backup task holds: one backup of a VM at a time, whatever the job. */
export function vmLockKey(vmUuid: string): string {
  return `vm:${vmUuid}`;
}

/**
 * One task of `taskType` per VM the job's selection names, holding the VM's catalog lock. Explicit
 * mode keeps the listed VMs (a VM gone from the pool still gets a task, which fails naming it);
 * smart mode selects at each run. Either way, VMs tagged `no-backup` and VMs Haven created are
 * never backed up. Shared by the VM backup job types.
 */
export async function planVmTasks(context: JobPlanContext, taskType: string): Promise<PlannedTask[]> {
  const taskFor = (vm: Pick<VmInfo, 'uuid' | 'name'>): PlannedTask => ({
    type: taskType,
    subject: vm.name,
    input: { vm: vm.uuid, vmName: vm.name },
    lockKey: vmLockKey(vm.uuid),
  });
  const selection = parseSelection(context.job.selection);
  const access = await context.resources.pool(selection.poolId);
  return withPoolConnection(access, context.signal, async (pool) => {
    if (selection.mode === 'smart') return selectVms(await pool.listVms(), selection.smart).map(taskFor);
    const tasks: PlannedTask[] = [];
    for (const uuid of selection.vms) {
      let vm: VmInfo;
      try {
        vm = await pool.getVm(uuid);
      } catch (error) {
        if (!(error instanceof XapiNotFoundError)) throw error;
        tasks.push({ type: taskType, subject: uuid, input: { vm: uuid }, lockKey: vmLockKey(uuid) });
        continue;
      }
      if (!isExcludedAlways(vm)) tasks.push(taskFor(vm));
    }
    return tasks;
  });
}
