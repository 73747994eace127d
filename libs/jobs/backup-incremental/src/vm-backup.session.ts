import type { PoolAccess, TaskExecution, TaskExecutionContext } from '@haven/plugin-sdk';
import { withPoolConnection, XapiTransferError, XapiUnreachableError, type XapiPool } from '@haven/xapi';
import { BackupJobError, VmBackupTimeoutError } from './backup-incremental.errors';
import { parseSelection } from './vm.selection';

/** The VM marker key (other_config `haven:backup`) every VM backup job type holds. */
export const BACKUP_MARKER_KEY = 'backup';
const MARKER_TTL_MS = 10 * 60_000;

export interface VmBackupSessionOptions {
  /** Extra attempts inside the task after a transfer failure or an unreachable pool. */
  retries: number;
  /** For log lines: "backup", "full backup"… */
  label: string;
  /** The job type's error for a task naming no VM. */
  missingVm: (message: string) => Error;
  /** The job's `vmTimeoutSeconds`: the whole backup of the VM, retries included, is stopped past it. */
  timeoutSeconds?: number;
}

/**
 * The pool of the task's VM: planned tasks name it; a task queued before jobs could span pools
 * has the job's single `poolId`.
 */
export function taskPoolId(task: Pick<TaskExecution, 'input' | 'job' | 'subject'>): string {
  const planned = task.input['poolId'];
  if (typeof planned === 'string' && planned !== '') return planned;
  const { pools } = parseSelection(task.job.selection);
  const ids = 'ids' in pools ? pools.ids : [];
  if (ids.length === 1) return ids.join('');
  throw new BackupJobError(
    'INVALID_SELECTION',
    `task of ${task.subject} names no pool (input.poolId); re-run the job so that it is planned again`,
  );
}

/**
 * What every VM backup task does around its work: connect to the VM's pool, hold the VM's backup
 * marker (renewed by the same owner while the work runs, so a long export never loses the VM; a
 * second run or Haven installation is refused by it), retry `attempt` after transient transfer
 * failures up to `retries` times, then release the marker and disconnect (or hand the connection
 * back to the worker's cache).
 * With `timeoutSeconds`, `attempt` gets a context whose signal also aborts when the time is up: the
 * attempt cleans up as on any failure (its snapshot goes) and the task fails with VmBackupTimeoutError.
 */
export async function withVmBackupSession<T>(
  task: TaskExecution,
  context: TaskExecutionContext,
  options: VmBackupSessionOptions,
  attempt: (pool: XapiPool, vmUuid: string, context: TaskExecutionContext) => Promise<T>,
): Promise<T> {
  const vmUuid = task.input['vm'];
  if (typeof vmUuid !== 'string' || vmUuid === '')
    throw options.missingVm(`task ${task.taskId} names no VM (input.vm); re-run the job`);
  const access = await context.resources.pool(taskPoolId(task));
  const deadline = new AbortController();
  const seconds = options.timeoutSeconds;
  const timer =
    seconds === undefined
      ? undefined
      : setTimeout(
          () => deadline.abort(new VmBackupTimeoutError(`${options.label} of VM ${task.subject}`, seconds)),
          seconds * 1000,
        );
  const timed: TaskExecutionContext = {
    ...context,
    signal: AbortSignal.any([context.signal, deadline.signal]),
  };
  try {
    return await inSession(task, context, timed, access, vmUuid, options, attempt);
  } catch (error) {
    // Whatever the stopped work threw (an AbortError, a closed stream…), the reason is the timeout.
    if (deadline.signal.aborted && !context.signal.aborted) throw deadline.signal.reason as Error;
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

async function inSession<T>(
  task: TaskExecution,
  context: TaskExecutionContext,
  timed: TaskExecutionContext,
  access: PoolAccess,
  vmUuid: string,
  options: VmBackupSessionOptions,
  attempt: (pool: XapiPool, vmUuid: string, context: TaskExecutionContext) => Promise<T>,
): Promise<T> {
  // The worker's connection to the pool when it shares one (XapiPoolCache), else our own.
  return withPoolConnection(access, context.signal, async (pool) => {
    const owner = `${task.job.id}:${task.taskId}`;
    await pool.acquireVmMarker(vmUuid, BACKUP_MARKER_KEY, owner, MARKER_TTL_MS);
    const renewal = setInterval(() => {
      pool.acquireVmMarker(vmUuid, BACKUP_MARKER_KEY, owner, MARKER_TTL_MS).catch((error: unknown) => {
        context.log('warn', 'renewing the VM backup marker failed', { vm: vmUuid, error: String(error) });
      });
    }, MARKER_TTL_MS / 4);
    try {
      for (let tries = 0; ; tries++) {
        try {
          return await attempt(pool, vmUuid, timed);
        } catch (error) {
          const transient = error instanceof XapiTransferError || error instanceof XapiUnreachableError;
          // A timeout is not retried (nor is it in Xen Orchestra): the time is up for the whole VM.
          if (!transient || tries >= options.retries || timed.signal.aborted) throw error;
          context.log('warn', `${options.label} of VM ${task.subject} failed, retrying`, {
            attempt: tries + 1,
            error: error.message,
          });
        }
      }
    } finally {
      clearInterval(renewal);
      await pool.releaseVmMarker(vmUuid, BACKUP_MARKER_KEY, owner).catch((error: unknown) => {
        context.log('warn', 'releasing the VM backup marker failed; it expires by itself', {
          vm: vmUuid,
          error: String(error),
        });
      });
    }
  });
}
