import {
  globMatcher,
  type JobPlanContext,
  type PlannedTask,
  PlanUnavailableError,
  type PoolSummary,
} from '@haven/plugin-sdk';
import { withPoolConnection, XapiTransferError, XapiUnreachableError, type VmInfo } from '@haven/xapi';
import { BackupJobError } from './backup-incremental.errors';
import { isExcludedAlways, parseSelection, type PoolSelection, selectVms } from './vm.selection';

/** The catalog lock a VM's backup task holds: one backup of a VM at a time, whatever the job. */
export function vmLockKey(vmUuid: string): string {
  return `vm:${vmUuid}`;
}

/** A pool's VMs as planning read them, or why it could not. */
type PoolInventory =
  | { pool: PoolSummary; vms: VmInfo[] }
  | { pool: PoolSummary; error: Error; transient: boolean };

/** A pool that did not answer may answer on the next attempt; bad credentials will not. */
function isTransient(error: unknown): boolean {
  return error instanceof XapiUnreachableError || error instanceof XapiTransferError;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The pools of the tenant the selection names, by id or by a pattern over their names. */
async function selectedPools(context: JobPlanContext, pools: PoolSelection): Promise<PoolSummary[]> {
  if ('ids' in pools)
    return Promise.all(
      pools.ids.map(async (id) => {
        try {
          const access = await context.resources.pool(id);
          return { id: access.id, name: access.name };
        } catch {
          // A pool deleted since the job was saved fails its own share (inventoryOf says why), not the run.
          return { id, name: id };
        }
      }),
    );
  const all = await context.resources.pools();
  const matches = globMatcher(pools.namePattern);
  const chosen = all.filter((pool) => matches(pool.name));
  if (chosen.length === 0)
    throw new BackupJobError(
      'NO_POOL',
      `job selection pools "${pools.namePattern}" matches no pool of this tenant (${
        all.length === 0 ? 'it has none' : `its pools: ${all.map((pool) => pool.name).join(', ')}`
      }); edit the job or connect the pool`,
    );
  return chosen;
}

async function inventoryOf(context: JobPlanContext, pool: PoolSummary): Promise<PoolInventory> {
  try {
    const access = await context.resources.pool(pool.id);
    const vms = await withPoolConnection(access, context.signal, (connection) => connection.listVms());
    return { pool, vms };
  } catch (error) {
    return {
      pool,
      error: error instanceof Error ? error : new Error(String(error)),
      transient: isTransient(error),
    };
  }
}

/**
 * One task of `taskType` per VM the job's selection names, holding the VM's catalog lock and
 * naming the pool the VM is in (the executor connects there). The selection spans one or more
 * pools: smart mode selects in each at each run; explicit mode finds each listed VM in whichever
 * of the pools has it. Either way, VMs tagged `no-backup` and VMs Haven created are never backed
 * up.
 *
 * A pool that does not answer does not stop the others: its failure is a failed task of the run
 * naming the pool (smart mode), or the failure of each listed VM no answering pool has (explicit
 * mode). When no pool answers at all, planning fails (`PlanUnavailableError` when a retry may help).
 * Shared by the VM backup job types.
 */
export async function planVmTasks(context: JobPlanContext, taskType: string): Promise<PlannedTask[]> {
  const selection = parseSelection(context.job.selection);
  const pools = await selectedPools(context, selection.pools);
  const inventories = await Promise.all(pools.map((pool) => inventoryOf(context, pool)));
  const answered = inventories.flatMap((inventory) => ('vms' in inventory ? [inventory] : []));
  const silent = inventories.flatMap((inventory) => ('error' in inventory ? [inventory] : []));
  if (answered.length === 0) throw noPoolAnswered(silent);

  const taskFor = (vm: VmInfo, pool: PoolSummary): PlannedTask => ({
    type: taskType,
    subject: vm.name,
    input: { vm: vm.uuid, vmName: vm.name, poolId: pool.id, poolName: pool.name },
    lockKey: vmLockKey(vm.uuid),
  });

  if (selection.mode === 'smart') {
    const selected = answered.flatMap(({ pool, vms }) =>
      selectVms(vms, selection.smart).map((vm) => ({ vm, pool })),
    );
    selected.sort((a, b) => a.vm.name.localeCompare(b.vm.name) || a.pool.name.localeCompare(b.pool.name));
    return [
      ...selected.map(({ vm, pool }) => taskFor(vm, pool)),
      ...silent.map(({ pool, error, transient }) => ({
        type: taskType,
        subject: `pool ${pool.name}`,
        input: { poolId: pool.id, poolName: pool.name },
        failure: {
          message: `pool "${pool.name}" did not answer, so its VMs were not selected nor backed up: ${describe(error)}`,
          transient,
        },
      })),
    ];
  }

  const tasks: PlannedTask[] = [];
  for (const uuid of selection.vms) {
    const found = answered
      .map(({ pool, vms }) => ({ pool, vm: vms.find((vm) => vm.uuid === uuid) }))
      .find((entry) => entry.vm !== undefined);
    if (found?.vm !== undefined) {
      if (!isExcludedAlways(found.vm)) tasks.push(taskFor(found.vm, found.pool));
      continue;
    }
    tasks.push({
      type: taskType,
      subject: uuid,
      input: { vm: uuid },
      lockKey: vmLockKey(uuid),
      failure: missingVm(uuid, answered, silent),
    });
  }
  return tasks;
}

/** Why a listed VM has no task: in no pool that answered, and maybe in one that did not. */
function missingVm(
  uuid: string,
  answered: readonly { pool: PoolSummary }[],
  silent: readonly { pool: PoolSummary; error: Error; transient: boolean }[],
): { message: string; transient: boolean } {
  const names = (list: readonly { pool: PoolSummary }[]) =>
    list.map(({ pool }) => `"${pool.name}"`).join(', ');
  if (silent.length === 0)
    return {
      message: `VM ${uuid} is in no pool of this job (searched ${names(answered)}): it was deleted, or its pool is not connected to Haven; remove it from the job or add its pool`,
      transient: false,
    };
  return {
    message: `VM ${uuid} is in none of the pools that answered (${names(answered)}); pool(s) ${silent
      .map(({ pool, error }) => `"${pool.name}" (${describe(error)})`)
      .join(', ')} did not answer`,
    transient: silent.some((entry) => entry.transient),
  };
}

/** Every pool of the selection failed: transient when each failure may pass (silent pools). */
function noPoolAnswered(silent: readonly { pool: PoolSummary; error: Error; transient: boolean }[]): Error {
  const only = silent.length === 1 ? silent[0] : undefined;
  if (only !== undefined && !only.transient) return only.error;
  const message = silent
    .map(({ pool, error }) => `pool "${pool.name}" did not answer: ${describe(error)}`)
    .join('; ');
  return silent.every((entry) => entry.transient)
    ? new PlanUnavailableError(message, { cause: silent[0]?.error })
    : new BackupJobError('POOLS_FAILED', message, { cause: silent[0]?.error });
}
