import { Readable } from 'node:stream';
import type { TaskExecutionContext } from '@haven/plugin-sdk';
import { openRepository, restorePointIdOfKey, type DiskReader } from '@haven/repository';
import { XapiPool, type SrInfo, type VmInfo } from '@haven/xapi';

/** Task type of restore runs (queued by the scheduler's RestoreLauncher). */
export const RESTORE_VM_TASK = 'restore.vm';

/** Marks a VM created by a restore with the catalog id of its restore point. */
export const RESTORED_FROM_KEY = 'haven:restored-from';

/** Marks a VM with the restore task that creates it, so a redelivered task removes a crashed attempt's VM. */
export const RESTORE_TASK_KEY = 'haven:restore-task';

export type RestoreVmErrorCode = 'INVALID_INPUT' | 'UNKNOWN_LAYOUT' | 'SR_NOT_FOUND' | 'NO_DISK_SR';

export class RestoreVmError extends Error {
  constructor(
    readonly code: RestoreVmErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'RestoreVmError';
  }
}

export interface RestoreVmInput {
  restorePointId: string;
  remoteId: string;
  manifestKey: string;
  poolId: string;
  srUuid?: string;
  name?: string;
}

export interface RestoredDisk {
  key: string;
  position: number;
  vdiUuid: string;
  virtualSize: number;
}

export interface RestoreVmResult extends Record<string, unknown> {
  vmUuid: string;
  vmName: string;
  srUuid: string;
  disks: RestoredDisk[];
}

function readInput(taskId: string, input: Record<string, unknown>): RestoreVmInput {
  const text = (field: string, optional = false): string | undefined => {
    const value = input[field];
    if (value === undefined && optional) return undefined;
    if (typeof value !== 'string' || value === '')
      throw new RestoreVmError(
        'INVALID_INPUT',
        `restore task ${taskId} has no valid input.${field}; start the restore again`,
      );
    return value;
  };
  const srUuid = text('srUuid', true);
  const name = text('name', true);
  return {
    restorePointId: text('restorePointId') ?? '',
    remoteId: text('remoteId') ?? '',
    manifestKey: text('manifestKey') ?? '',
    poolId: text('poolId') ?? '',
    ...(srUuid === undefined ? {} : { srUuid }),
    ...(name === undefined ? {} : { name }),
  };
}

/** The SR asked for, else the pool's default, else the first SR that holds disks (not ISO). */
function chooseSr(srs: readonly SrInfo[], wanted: string | undefined): SrInfo {
  if (wanted !== undefined) {
    const sr = srs.find((candidate) => candidate.uuid === wanted);
    if (!sr || !sr.acceptsDisks)
      throw new RestoreVmError(
        'SR_NOT_FOUND',
        `SR ${wanted} is not a disk SR of the target pool; pick one from GET /api/v1/pools/:id/srs`,
      );
    return sr;
  }
  const sr = srs.find((c) => c.isDefault && c.acceptsDisks) ?? srs.find((c) => c.acceptsDisks);
  if (!sr) throw new RestoreVmError('NO_DISK_SR', 'the target pool has no SR that can hold disks');
  return sr;
}

/** Counts bytes as XAPI pulls them, so progress follows what is really uploaded. */
function counted(source: Readable, onBytes: (bytes: number) => void): Readable {
  return Readable.from(
    (async function* () {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        onBytes(chunk.length);
        yield chunk;
      }
    })(),
    { objectMode: false, highWaterMark: 1 },
  );
}

/** Position of a disk on the new VM: its key (the VBD position at backup time), else its rank. */
function positionOf(disk: DiskReader, rank: number, taken: Set<number>): number {
  const parsed = Number(disk.key);
  const position = Number.isInteger(parsed) && parsed >= 0 && !taken.has(parsed) ? parsed : rank;
  taken.add(position);
  return position;
}

/**
 * Restores a restore point as a new halted VM: VM from the manifest's record, then each disk
 * created on the chosen SR, written from the repository (raw, streamed) and plugged at its
 * position. A failure removes what was created, so no half-restored VM is left visible.
 */
export async function executeRestoreVm(
  task: { taskId: string; input: Record<string, unknown> },
  context: Pick<TaskExecutionContext, 'signal' | 'reportProgress' | 'resources' | 'log'>,
): Promise<RestoreVmResult> {
  const input = readInput(task.taskId, task.input);
  const pointId = restorePointIdOfKey(input.manifestKey);
  if (pointId === undefined)
    throw new RestoreVmError(
      'UNKNOWN_LAYOUT',
      `restore point ${input.restorePointId} has an unexpected manifest key ${input.manifestKey}; run haven remotes sync`,
    );
  const remote = await context.resources.remote(input.remoteId);
  try {
    const key = remote.repositoryPassphrase;
    const repository = await openRepository(remote.store, key === undefined ? {} : { key });
    const point = await repository.openRestorePoint(pointId, context.signal);
    const access = await context.resources.pool(input.poolId);
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
      // A worker that died mid-restore left its VM behind: this attempt starts clean.
      for (const leftover of await pool.listVms())
        if (leftover.otherConfig[RESTORE_TASK_KEY] === task.taskId) {
          context.log('warn', 'removing the VM of an interrupted attempt of this restore', {
            vm: leftover.uuid,
          });
          await pool.destroyVm(leftover.ref, { withDisks: true });
        }
      const sr = chooseSr(await pool.listSrs(), input.srUuid);
      const manifest = point.manifest;
      const vmName =
        input.name ??
        `${manifest.vm.name} (restored ${new Date().toISOString().slice(0, 16).replace('T', ' ')})`;
      const bytesTotal = point.disks.reduce((sum, disk) => sum + disk.virtualSize, 0);
      let bytesDone = 0;
      context.reportProgress({ step: 'creating VM', bytesDone, bytesTotal });
      let unplugged: string | undefined;
      let vm: VmInfo | undefined;
      try {
        vm = await pool.createVm({
          name: vmName,
          record: manifest.vm.record ?? {},
          otherConfig: { [RESTORED_FROM_KEY]: input.restorePointId, [RESTORE_TASK_KEY]: task.taskId },
        });
        const disks: RestoredDisk[] = [];
        const taken = new Set<number>();
        for (const [rank, disk] of point.disks.entries()) {
          const position = positionOf(disk, rank, taken);
          const vdi = await pool.createVdi({
            srUuid: sr.uuid,
            name: disk.meta.name ?? `${vmName} disk ${position}`,
            virtualSize: disk.virtualSize,
            otherConfig: { [RESTORED_FROM_KEY]: input.restorePointId },
          });
          unplugged = vdi.ref;
          // Plugged before it is written, so removing the VM removes the disk whatever happens next.
          await pool.attachVdi(vm.ref, vdi.ref, position);
          unplugged = undefined;
          const source = disk.createReadStream({ signal: context.signal });
          await pool.importVdi(
            vdi.ref,
            counted(source, (bytes) => {
              bytesDone += bytes;
              context.reportProgress({ step: `writing disk ${disk.key}`, bytesDone, bytesTotal });
            }),
            { format: 'raw', length: disk.virtualSize, signal: context.signal },
          );
          disks.push({ key: disk.key, position, vdiUuid: vdi.uuid, virtualSize: disk.virtualSize });
        }
        context.reportProgress({ step: 'done', bytesDone: bytesTotal, bytesTotal });
        return { vmUuid: vm.uuid, vmName, srUuid: sr.uuid, disks };
      } catch (error) {
        // The VM takes its plugged disks with it; a disk created but not yet plugged goes on its own.
        if (vm !== undefined)
          await pool.destroyVm(vm.ref, { withDisks: true }).catch((cleanup: unknown) => {
            context.log('warn', 'removing the partly restored VM failed', {
              vm: vm?.uuid,
              error: String(cleanup),
            });
          });
        if (unplugged !== undefined) {
          const ref = unplugged;
          await pool.destroyVdi(ref).catch((cleanup: unknown) => {
            context.log('warn', 'removing a partly restored disk failed', {
              vdi: ref,
              error: String(cleanup),
            });
          });
        }
        throw error;
      }
    } finally {
      await pool.close();
    }
  } finally {
    await remote.store.close().catch(() => undefined);
  }
}
