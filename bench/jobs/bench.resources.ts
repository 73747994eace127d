import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import localRemote from '@haven/remote-local';
import { backupVmIncremental, type VmBackupResult } from '@haven/job-backup-incremental';
import type { JobDefinition, PoolAccess, RemoteAccess, TaskExecutionContext } from '@haven/plugin-sdk';

/**
 * The simulator's pool as a job resource (its default root credentials). `eventDebounceMs` as
 * HAVEN_XAPI_EVENT_DEBOUNCE_MS would set it; by default the client's own 200 ms, as in production.
 */
export function simPool(url: string, eventDebounceMs?: number): (id: string) => Promise<PoolAccess> {
  return (id) =>
    Promise.resolve({
      id,
      name: 'sim',
      url,
      username: 'root',
      password: 'password',
      allowUnauthorized: false,
      ...(eventDebounceMs !== undefined ? { eventDebounceMs } : {}),
    });
}

/** Local remotes in folders under `root`, named by id; `passphrase` makes a remote's repository encrypted. */
export function localRemotes(
  root: string,
  passphrase: (id: string) => string | undefined = () => undefined,
): (id: string) => Promise<RemoteAccess> {
  return async (id) => {
    const key = passphrase(id);
    // A local remote's folder must exist (Haven never creates it).
    await mkdir(join(root, id), { recursive: true });
    return {
      id,
      name: id,
      type: 'local',
      store: await localRemote.create({ path: join(root, id) }, { name: id }),
      ...(key === undefined ? {} : { repositoryPassphrase: key }),
    };
  };
}

/** A backup.incremental job of one VM of the simulator's pool ('sim'), tenant 'bench'. */
export function benchJob(
  id: string,
  vmUuid: string,
  remoteIds: string[],
  settings: Record<string, unknown>,
  name = 'bench',
): JobDefinition {
  return {
    id,
    tenantId: 'bench',
    name,
    type: 'backup.incremental',
    selection: { poolId: 'sim', mode: 'explicit', vms: [vmUuid] },
    remoteIds,
    settings,
  };
}

/** One VM task of `job`, run in this process as a transfer worker runs it. */
export function backupOneVm(
  job: JobDefinition,
  vm: { uuid: string; name: string },
  taskId: string,
  context: TaskExecutionContext,
): Promise<VmBackupResult> {
  return backupVmIncremental(
    {
      taskId,
      runId: taskId,
      tenantId: job.tenantId,
      type: 'backup.incremental.vm',
      subject: vm.name,
      input: { vm: vm.uuid },
      attempt: 1,
      job,
    },
    context,
  );
}
