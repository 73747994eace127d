import type {
  CommittedRestorePoint,
  RemoteAccess,
  RestorePointReference,
  RetainedRestorePoint,
  TaskExecution,
  TaskExecutionContext,
} from '@haven/plugin-sdk';
import { withDiskStream } from '@haven/plugin-sdk';
import {
  SNAPSHOT_JOB_KEY,
  SNAPSHOT_TASK_KEY,
  SNAPSHOT_VM_KEY,
  openOrInitRemoteRepository,
  retainOnEveryRemote,
  snapshotName,
  withVmBackupSession,
} from '@haven/job-backup-incremental';
import { XapiPool, type SnapshotInfo, type VmInfo } from '@haven/xapi';
import {
  ARCHIVE_FORMAT,
  ARCHIVE_FORMAT_VERSION,
  ARCHIVE_SEGMENT_SIZE,
  archiveManifestKey,
  archiveOfTask,
  ArchiveStore,
  newArchiveId,
  type ArchiveManifest,
  type ArchiveSegment,
} from './archive';
import { storeSegmentsOnAll } from './archive.fanout';
import { applyArchiveRetention, hasRetention } from './archive.retention';
import { BackupFullError } from './backup-full.errors';
import { backupFullSettings, type BackupFullSettings } from './backup-full.settings';

export interface VmArchiveResult extends Record<string, unknown> {
  restorePoints: CommittedRestorePoint[];
  /** Bytes of the XVA export (after host compression). */
  bytes: number;
  segments: number;
  compression: BackupFullSettings['compression'];
  /** Set when the run's schedule has a retention policy. */
  expiredRestorePoints?: RestorePointReference[];
  retainedRestorePoints?: RetainedRestorePoint[];
}

/** One remote of the job with its repository opened, and the archive this attempt writes there. */
interface ArchiveTarget {
  access: RemoteAccess;
  archives: ArchiveStore;
  archiveId: string;
  segments: ArchiveSegment[];
}

/**
 * The `backup.full.vm` executor: snapshots the VM, exports the snapshot as an XVA compressed by the
 * host, stores it as an independent archive on every remote of the job (read once, fanned out),
 * and removes the snapshot. Safe to run again: the VM marker is renewed by the same owner, this
 * task's leftovers (snapshot, partial archives) are removed first, and a redelivery after the
 * commit reports the committed archives instead of taking another backup.
 */
export async function backupVmFull(
  task: TaskExecution,
  context: TaskExecutionContext,
): Promise<VmArchiveResult> {
  const settings = backupFullSettings(task.job.settings);
  // The same marker and lock as backup.incremental: a VM is never backed up by two runs at once.
  return withVmBackupSession(
    task,
    context,
    {
      retries: settings.retries,
      label: 'full backup',
      missingVm: (message) => new BackupFullError('INVALID_SELECTION', message),
      ...(settings.vmTimeoutSeconds !== undefined ? { timeoutSeconds: settings.vmTimeoutSeconds } : {}),
    },
    (pool, vmUuid, timed) => archiveOnce(pool, vmUuid, task, timed, settings),
  );
}

async function archiveOnce(
  pool: XapiPool,
  vmUuid: string,
  task: TaskExecution,
  context: TaskExecutionContext,
  settings: BackupFullSettings,
): Promise<VmArchiveResult> {
  const vm = await pool.getVm(vmUuid);
  const targets: ArchiveTarget[] = [];
  try {
    for (const remoteId of task.job.remoteIds) {
      const remote = await context.resources.remote(remoteId);
      try {
        const repository = await openOrInitRemoteRepository(remote);
        targets.push({
          access: remote,
          archives: ArchiveStore.forRepository(repository),
          archiveId: newArchiveId(task.taskId),
          segments: [],
        });
      } catch (error) {
        await remote.store.close().catch(() => undefined);
        throw error;
      }
    }
    await removeLeftoverSnapshots(pool, task, vm, context);
    const done = await alreadyCommitted(targets, task, vm, settings, context.signal);
    if (done !== undefined) return done;
    await removeLeftoverArchives(targets, task, vm, context);

    // The VM's archive is one of the worker's disk streams; the snapshot is taken once it has one,
    // so no snapshot waits on the SR for a slot.
    const result = await withDiskStream(context, 'the VM archive', context.signal, async () => {
      const snapshot = await pool.snapshotVm(vm, {
        name: snapshotName(settings.snapshotNameTemplate, {
          vm: vm.name,
          job: task.job.name,
          date: new Date(),
        }),
        otherConfig: {
          [SNAPSHOT_JOB_KEY]: task.job.id,
          [SNAPSHOT_VM_KEY]: vm.uuid,
          [SNAPSHOT_TASK_KEY]: task.taskId,
        },
        signal: context.signal,
      });
      try {
        return await writeArchives(pool, vm, snapshot, targets, task, context, settings);
      } catch (error) {
        // Nothing of this attempt may stay: its archive folders go (a manifest written on some remotes
        // too: the catalog never heard of it, and the next attempt writes them all again).
        for (const target of targets)
          await target.archives
            .remove({ vmUuid: vm.uuid, archiveId: target.archiveId })
            .catch((cleanup: unknown) => {
              context.log('warn', `removing the partial archive on remote ${target.access.name} failed`, {
                archive: target.archiveId,
                error: String(cleanup),
              });
            });
        throw error;
      } finally {
        // A full backup keeps no snapshot: there is no next base.
        await pool.destroySnapshot(snapshot).catch((cleanup: unknown) => {
          context.log(
            'error',
            `removing snapshot ${snapshot.uuid} of a full backup failed; remove it by hand`,
            {
              error: String(cleanup),
            },
          );
        });
      }
    });
    if (hasRetention(task.schedule)) await retain(result, targets, task, vm, context);
    return result;
  } finally {
    for (const target of targets) await target.access.store.close().catch(() => undefined);
  }
}

/** This very task's archives when every remote already holds one committed (a redelivery). */
async function alreadyCommitted(
  targets: readonly ArchiveTarget[],
  task: TaskExecution,
  vm: VmInfo,
  settings: BackupFullSettings,
  signal: AbortSignal,
): Promise<VmArchiveResult | undefined> {
  const found: ArchiveManifest[] = [];
  for (const target of targets) {
    const committed = (await target.archives.folders(vm.uuid, signal)).filter(
      (folder) => folder.committed && archiveOfTask(folder.archiveId, task.taskId),
    );
    let mine: ArchiveManifest | undefined;
    for (const folder of committed) {
      const manifest = await target.archives.readManifest(
        archiveManifestKey(vm.uuid, folder.archiveId),
        signal,
      );
      if (manifest.taskId === task.taskId) mine = manifest;
    }
    if (mine === undefined) return undefined;
    found.push(mine);
  }
  const first = found.at(0);
  if (first === undefined) return undefined;
  return {
    restorePoints: targets.map((target, index) =>
      restorePointOf(target.access.id, vm, found.at(index) ?? first),
    ),
    bytes: first.totalSize,
    segments: first.segments.length,
    compression: settings.compression,
  };
}

/**
 * Snapshots of this job and VM still on the host: left by an attempt that died before removing its
 * own (a full job keeps none, and the VM marker keeps other runs of the job away meanwhile).
 */
async function removeLeftoverSnapshots(
  pool: XapiPool,
  task: TaskExecution,
  vm: VmInfo,
  context: TaskExecutionContext,
): Promise<void> {
  const snapshots = await pool.listSnapshots(vm.uuid, {
    otherConfig: { [SNAPSHOT_JOB_KEY]: task.job.id, [SNAPSHOT_VM_KEY]: vm.uuid },
  });
  for (const snapshot of snapshots) {
    context.log('warn', 'removing a snapshot an interrupted full backup of this job left', {
      snapshot: snapshot.uuid,
    });
    await pool.destroySnapshot(snapshot);
  }
}

/** Archive folders an earlier attempt of this task left (partial, or committed on some remotes only). */
async function removeLeftoverArchives(
  targets: readonly ArchiveTarget[],
  task: TaskExecution,
  vm: VmInfo,
  context: TaskExecutionContext,
): Promise<void> {
  for (const target of targets)
    for (const folder of await target.archives.folders(vm.uuid, context.signal))
      if (archiveOfTask(folder.archiveId, task.taskId)) {
        context.log(
          'warn',
          `removing the archive an interrupted attempt left on remote ${target.access.name}`,
          {
            archive: folder.archiveId,
          },
        );
        await target.archives.remove(folder, context.signal);
      }
}

function restorePointOf(remoteId: string, vm: VmInfo, manifest: ArchiveManifest): CommittedRestorePoint {
  return {
    remoteId,
    manifestKey: archiveManifestKey(vm.uuid, manifest.id),
    vmUuid: vm.uuid,
    vmName: vm.name,
    kind: 'full',
    logicalBytes: manifest.totalSize,
    storedBytes: manifest.storedSize,
    takenAt: manifest.takenAt,
    committedAt: manifest.createdAt,
  };
}

/**
 * What the XVA export may come to, for progress: the snapshot's disks' virtual sizes, an upper
 * bound (empty blocks are left out of the XVA, and host compression shrinks it further), so the
 * bar never claims the end early and the ETA errs long; the committed step reports the real size.
 * Not the VDIs' physical utilisation: on a VHD chain a fresh snapshot's own layer holds almost
 * nothing, while its export reads the whole chain.
 */
export function expectedExportBytes(snapshot: Pick<SnapshotInfo, 'disks'>): number {
  return snapshot.disks.reduce((sum, disk) => sum + disk.virtualSize, 0);
}

async function writeArchives(
  pool: XapiPool,
  vm: VmInfo,
  snapshot: SnapshotInfo,
  targets: ArchiveTarget[],
  task: TaskExecution,
  context: TaskExecutionContext,
  settings: BackupFullSettings,
): Promise<VmArchiveResult> {
  const exported = await pool.exportVm(snapshot.ref, {
    compression: settings.compression,
    signal: context.signal,
  });
  const bytesTotal = expectedExportBytes(snapshot);
  let bytes: number;
  try {
    bytes = await storeSegmentsOnAll(
      exported,
      targets.map((target) => ({
        archives: target.archives,
        location: { vmUuid: vm.uuid, archiveId: target.archiveId },
        segments: target.segments,
      })),
      {
        segmentSize: ARCHIVE_SEGMENT_SIZE,
        signal: context.signal,
        onProgress: (done) =>
          context.reportProgress({
            step: 'exporting',
            vm: { uuid: vm.uuid, name: vm.name },
            bytesDone: done,
            bytesTotal: Math.max(bytesTotal, done),
          }),
      },
    );
  } finally {
    if (!exported.destroyed) exported.destroy();
  }
  if (bytes === 0)
    throw new BackupFullError(
      'EMPTY_EXPORT',
      `the XVA export of VM "${vm.name}" (${vm.uuid}) was empty; retry the backup`,
    );
  const restorePoints: CommittedRestorePoint[] = [];
  for (const target of targets) {
    const manifest: ArchiveManifest = {
      format: ARCHIVE_FORMAT,
      version: ARCHIVE_FORMAT_VERSION,
      id: target.archiveId,
      vm: {
        uuid: vm.uuid,
        name: vm.name,
        record: vm.record,
        vifs: vm.vifs.map(({ device, mac, networkUuid, networkName }) => ({
          device,
          mac,
          networkUuid,
          networkName,
        })),
      },
      tenant: task.tenantId,
      job: { id: task.job.id, name: task.job.name },
      ...(task.schedule === undefined
        ? {}
        : { schedule: { id: task.schedule.id, name: task.schedule.name } }),
      taskId: task.taskId,
      takenAt: snapshot.takenAt.toISOString(),
      createdAt: new Date().toISOString(),
      compression: settings.compression,
      encrypted: target.archives.sealer.encrypted,
      segmentSize: ARCHIVE_SEGMENT_SIZE,
      segments: target.segments,
      totalSize: bytes,
      storedSize: target.segments.reduce((sum, segment) => sum + segment.storedSize, 0),
    };
    await target.archives.commit(manifest, context.signal);
    restorePoints.push(restorePointOf(target.access.id, vm, manifest));
  }
  context.reportProgress({
    step: 'committed',
    vm: { uuid: vm.uuid, name: vm.name },
    bytesDone: bytes,
    bytesTotal: bytes,
  });
  return {
    restorePoints,
    bytes,
    segments: targets[0]?.segments.length ?? 0,
    compression: settings.compression,
  };
}

/** The schedule's retention on every remote, after the new archives are committed. */
async function retain(
  result: VmArchiveResult,
  targets: readonly ArchiveTarget[],
  task: TaskExecution,
  vm: VmInfo,
  context: TaskExecutionContext,
): Promise<void> {
  const schedule = task.schedule;
  if (schedule === undefined) return;
  await retainOnEveryRemote(result, targets, context, (target) =>
    applyArchiveRetention(target.archives, target.access.id, task, schedule, vm.uuid, context.signal),
  );
}
