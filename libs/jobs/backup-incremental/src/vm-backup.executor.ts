import type {
  CommittedRestorePoint,
  RemoteAccess,
  RestorePointReference,
  RetainedRestorePoint,
  ScheduleDefinition,
  TaskExecution,
  TaskExecutionContext,
} from '@haven/plugin-sdk';
import {
  initRepository,
  isRepositoryError,
  manifestKey,
  openRepository,
  type Repository,
  type RestorePointManifest,
  type RestorePointReader,
  type RestorePointWriter,
} from '@haven/repository';
import { openVhdStream, VHD_BLOCK_SIZE, type VhdStreamBlock } from '@haven/vhd';
import {
  RECORDED_VIFS_ATTRIBUTE,
  recordVifs,
  XapiPool,
  XapiTransferError,
  XapiUnreachableError,
  type DiskInfo,
  type SnapshotInfo,
  type VmInfo,
} from '@haven/xapi';
import { BackupJobError } from './backup-incremental.errors';
import { backupSettings, snapshotName, type BackupIncrementalSettings } from './backup-incremental.settings';
import { BlockFanout } from './block.fanout';
import { wholeBlocks } from './whole-block.merger';
import { applyRetention, hasRetention } from './restore-point.retention';
import { parseSelection } from './vm.selection';

/** other_config keys that tie a snapshot to the job and VM it was taken for. */
export const SNAPSHOT_JOB_KEY = 'haven:job';
export const SNAPSHOT_VM_KEY = 'haven:vm';
export const SNAPSHOT_TASK_KEY = 'haven:task';
/** The VM marker key (other_config `haven:backup`). */
export const BACKUP_MARKER_KEY = 'backup';
const MARKER_TTL_MS = 10 * 60_000;

export type DiskBackupMode = 'full' | 'delta';
/** Why a disk was backed up in full or as a delta; recorded in the task result and the manifest. */
export type DiskBackupReason =
  | 'no-base-restore-point'
  | 'no-base-snapshot'
  | 'disk-resized'
  | 'full-interval'
  | 'base-available';

export interface DiskBackupResult {
  key: string;
  mode: DiskBackupMode;
  reason: DiskBackupReason;
  /** Bytes read from the pool for this disk (2 MiB per exported block). */
  bytes: number;
}

export interface VmBackupResult extends Record<string, unknown> {
  restorePoints: CommittedRestorePoint[];
  disks: DiskBackupResult[];
  snapshot: string;
  /** Set when the run's schedule has a retention policy. */
  expiredRestorePoints?: RestorePointReference[];
  retainedRestorePoints?: RetainedRestorePoint[];
}

/** One remote of the job, its repository opened, and the newest restore point of this job + VM there. */
interface BackupTarget {
  access: RemoteAccess;
  repository: Repository;
  base?: { manifest: RestorePointManifest; reader: RestorePointReader };
  writer?: RestorePointWriter;
}

interface DiskPlan {
  disk: DiskInfo;
  key: string;
  mode: DiskBackupMode;
  reason: DiskBackupReason;
  baseDisk?: DiskInfo;
}

/** The disk's key inside restore points: its VBD position, stable across snapshots. */
function diskKey(disk: DiskInfo): string {
  return String(disk.position);
}

function attribute(manifest: RestorePointManifest, name: string): unknown {
  return manifest.attributes?.[name];
}

/**
 * The `backup.incremental.vm` executor: backs up one VM to every remote of the job, as a delta
 * from the previous backup snapshot when the remotes hold the restore point taken from it.
 * Safe to run again after a crash: the marker is renewed by the same owner, a leftover snapshot
 * of a failed attempt is removed, and a base is used only when it matches a live snapshot.
 */
export async function backupVmIncremental(
  task: TaskExecution,
  context: TaskExecutionContext,
): Promise<VmBackupResult> {
  const settings = backupSettings(task.job.settings);
  const vmUuid = task.input['vm'];
  if (typeof vmUuid !== 'string' || vmUuid === '') {
    throw new BackupJobError(
      'INVALID_SELECTION',
      `task ${task.taskId} names no VM (input.vm); re-run the job`,
    );
  }
  const { poolId } = parseSelection(task.job.selection);
  const access = await context.resources.pool(poolId);
  const pool = await XapiPool.connect(
    {
      url: access.url,
      username: access.username,
      password: access.password,
      allowUnauthorized: access.allowUnauthorized,
    },
    context.signal,
  );
  const owner = `${task.job.id}:${task.taskId}`;
  try {
    await pool.acquireVmMarker(vmUuid, BACKUP_MARKER_KEY, owner, MARKER_TTL_MS);
    // Renewed by the same owner while the backup runs, so a long export never loses the VM.
    const renewal = setInterval(() => {
      pool.acquireVmMarker(vmUuid, BACKUP_MARKER_KEY, owner, MARKER_TTL_MS).catch((error: unknown) => {
        context.log('warn', 'renewing the VM backup marker failed', { vm: vmUuid, error: String(error) });
      });
    }, MARKER_TTL_MS / 4);
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          return await backupOnce(pool, vmUuid, task, context, settings);
        } catch (error) {
          const transient = error instanceof XapiTransferError || error instanceof XapiUnreachableError;
          if (!transient || attempt >= settings.retries || context.signal.aborted) throw error;
          context.log('warn', `backup of VM ${task.subject} failed, retrying`, {
            attempt: attempt + 1,
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
  } finally {
    await pool.close();
  }
}

async function backupOnce(
  pool: XapiPool,
  vmUuid: string,
  task: TaskExecution,
  context: TaskExecutionContext,
  settings: BackupIncrementalSettings,
): Promise<VmBackupResult> {
  const vm = await pool.getVm(vmUuid);
  const tags = { [SNAPSHOT_JOB_KEY]: task.job.id, [SNAPSHOT_VM_KEY]: vm.uuid };
  const previous = await pool.listSnapshots(vm.uuid, { otherConfig: tags });
  const targets: BackupTarget[] = [];
  try {
    for (const remoteId of task.job.remoteIds) {
      const remote = await context.resources.remote(remoteId);
      try {
        targets.push(await openTarget(remote, task, vm, settings, context.signal));
      } catch (error) {
        await remote.store.close().catch(() => undefined);
        throw error;
      }
    }
    const done = alreadyCommitted(targets, task, vm, previous);
    if (done !== undefined) {
      // Redelivered after this task committed everywhere (the worker died before reporting):
      // report that backup again instead of taking another one.
      for (const old of previous) {
        if (old.uuid !== done.snapshot) await pool.destroySnapshot(old).catch(() => undefined);
      }
      return done;
    }
    const snapshot = await pool.snapshotVm(vm, {
      name: snapshotName(settings.snapshotNameTemplate, {
        vm: vm.name,
        job: task.job.name,
        date: new Date(),
      }),
      otherConfig: { ...tags, [SNAPSHOT_TASK_KEY]: task.taskId },
      signal: context.signal,
    });
    let result: VmBackupResult;
    try {
      result = await writeRestorePoints(pool, vm, snapshot, previous, targets, task, context, settings);
    } catch (error) {
      for (const target of targets) await target.writer?.abort().catch(() => undefined);
      // Nothing of this attempt may stay visible: its snapshot goes, the previous one stays the base.
      await pool.destroySnapshot(snapshot).catch((cleanup: unknown) => {
        context.log(
          'error',
          `removing snapshot ${snapshot.uuid} of a failed backup failed; remove it by hand`,
          {
            error: String(cleanup),
          },
        );
      });
      throw error;
    }
    // Only the new snapshot is kept: it is the base of the next run.
    for (const old of previous) {
      await pool.destroySnapshot(old).catch((error: unknown) => {
        context.log('warn', `removing the previous backup snapshot ${old.uuid} failed`, {
          error: String(error),
        });
      });
    }
    if (hasRetention(task.schedule)) await retain(result, targets, task, task.schedule, vm, context);
    return result;
  } finally {
    for (const target of targets) await target.access.store.close().catch(() => undefined);
  }
}

/**
 * The schedule's retention on every remote, after the new restore points are committed. A failure
 * here does not undo the backup: it is logged, and the next run applies retention again.
 */
async function retain(
  result: VmBackupResult,
  targets: readonly BackupTarget[],
  task: TaskExecution,
  schedule: ScheduleDefinition,
  vm: VmInfo,
  context: TaskExecutionContext,
): Promise<void> {
  const expired: RestorePointReference[] = [];
  const retained: RetainedRestorePoint[] = [];
  for (const target of targets) {
    try {
      const outcome = await applyRetention(
        target.repository,
        target.access.id,
        task,
        schedule,
        vm.uuid,
        context.signal,
      );
      expired.push(...outcome.expired);
      retained.push(...outcome.retained);
    } catch (error) {
      context.log('warn', `retention on remote ${target.access.name} failed; the next run applies it again`, {
        error: String(error),
      });
    }
  }
  for (const point of result.restorePoints) {
    const kept = retained.find((r) => r.remoteId === point.remoteId && r.manifestKey === point.manifestKey);
    if (kept) point.gfsTags = kept.gfsTags;
  }
  result.expiredRestorePoints = expired;
  result.retainedRestorePoints = retained;
}

/** The result of this very task when every remote already holds its restore point. */
function alreadyCommitted(
  targets: readonly BackupTarget[],
  task: TaskExecution,
  vm: VmInfo,
  previous: readonly SnapshotInfo[],
): VmBackupResult | undefined {
  const manifests = targets.map((target) => target.base?.manifest);
  const first = manifests[0];
  if (first === undefined) return undefined;
  if (
    !manifests.every((manifest) => manifest !== undefined && attribute(manifest, 'taskId') === task.taskId)
  ) {
    return undefined;
  }
  const snapshot = attribute(first, 'snapshotUuid');
  if (typeof snapshot !== 'string' || !previous.some((candidate) => candidate.uuid === snapshot))
    return undefined;
  const recorded = attribute(first, 'disks');
  const disks: DiskBackupResult[] = Array.isArray(recorded)
    ? recorded.map((entry: { key: string; mode: DiskBackupMode; reason: DiskBackupReason }) => ({
        key: entry.key,
        mode: entry.mode,
        reason: entry.reason,
        bytes: 0,
      }))
    : [];
  const incremental = disks.some((disk) => disk.mode === 'delta');
  return {
    snapshot,
    disks,
    restorePoints: targets.map((target, index) => {
      const manifest = manifests[index] ?? first;
      return {
        remoteId: target.access.id,
        manifestKey: manifestKey(manifest.id),
        vmUuid: vm.uuid,
        vmName: vm.name,
        kind: incremental ? 'incremental' : 'full',
        logicalBytes: manifest.sizes.logicalBytes,
        storedBytes: manifest.sizes.uploadedBytes,
        takenAt: manifest.createdAt,
      };
    }),
  };
}

async function openTarget(
  access: RemoteAccess,
  task: TaskExecution,
  vm: VmInfo,
  settings: BackupIncrementalSettings,
  signal: AbortSignal,
): Promise<BackupTarget> {
  const key = access.repositoryPassphrase;
  let repository: Repository;
  try {
    repository = await openRepository(access.store, key !== undefined ? { key } : {});
  } catch (error) {
    if (!isRepositoryError(error, 'NOT_INITIALIZED')) throw error;
    try {
      repository = await initRepository(access.store, {
        ...(key !== undefined ? { key } : {}),
        compression: {
          codec: settings.compression,
          ...(settings.compressionLevel !== undefined ? { level: settings.compressionLevel } : {}),
        },
      });
    } catch (initError) {
      // Another task initialised it meanwhile.
      if (!isRepositoryError(initError, 'ALREADY_INITIALIZED')) throw initError;
      repository = await openRepository(access.store, key !== undefined ? { key } : {});
    }
  }
  const points = await repository.listRestorePoints({ vmUuid: vm.uuid, tenant: task.tenantId, signal });
  const ofJob = points
    .filter((point) => point.manifest.job?.id === task.job.id)
    .sort((a, b) => a.manifest.committedAt.localeCompare(b.manifest.committedAt) || a.id.localeCompare(b.id));
  const newest = ofJob.at(-1);
  if (newest === undefined) return { access, repository };
  return {
    access,
    repository,
    base: { manifest: newest.manifest, reader: await repository.openRestorePoint(newest.id, signal) },
  };
}

function planDisks(
  snapshot: SnapshotInfo,
  previous: readonly SnapshotInfo[],
  targets: readonly BackupTarget[],
  fullInterval: number,
): DiskPlan[] {
  const bases = targets.map((target) => target.base?.manifest);
  const baseSnapshotUuid = bases[0] !== undefined ? attribute(bases[0], 'snapshotUuid') : undefined;
  const sameBase = bases.every(
    (manifest) => manifest !== undefined && attribute(manifest, 'snapshotUuid') === baseSnapshotUuid,
  );
  const baseSnapshot = sameBase
    ? previous.find((candidate) => candidate.uuid === baseSnapshotUuid)
    : undefined;
  const chain = bases.map((manifest) =>
    Number(manifest !== undefined ? attribute(manifest, 'chainLength') : 0),
  );
  return [...snapshot.disks]
    .sort((a, b) => a.position - b.position)
    .map((disk): DiskPlan => {
      const key = diskKey(disk);
      const full = (reason: DiskBackupReason): DiskPlan => ({ disk, key, mode: 'full', reason });
      if (bases.some((manifest) => manifest === undefined)) return full('no-base-restore-point');
      const baseDisk = baseSnapshot?.disks.find((candidate) => diskKey(candidate) === key);
      if (baseDisk === undefined) return full('no-base-snapshot');
      const stored = bases.map((manifest) => manifest?.disks.find((candidate) => candidate.key === key));
      if (stored.some((entry) => entry === undefined)) return full('no-base-restore-point');
      if (
        baseDisk.virtualSize !== disk.virtualSize ||
        stored.some((entry) => entry?.virtualSize !== disk.virtualSize)
      ) {
        return full('disk-resized');
      }
      if (fullInterval > 0 && chain.some((length) => !(length < fullInterval))) return full('full-interval');
      return { disk, key, mode: 'delta', reason: 'base-available', baseDisk };
    });
}

async function writeRestorePoints(
  pool: XapiPool,
  vm: VmInfo,
  snapshot: SnapshotInfo,
  previous: readonly SnapshotInfo[],
  targets: BackupTarget[],
  task: TaskExecution,
  context: TaskExecutionContext,
  settings: BackupIncrementalSettings,
): Promise<VmBackupResult> {
  const plans = planDisks(snapshot, previous, targets, settings.fullInterval);
  if (plans.length === 0) {
    throw new BackupJobError('NO_DISKS', `VM "${vm.name}" (${vm.uuid}) has no disk to back up`);
  }
  const incremental = plans.some((plan) => plan.mode === 'delta');
  const baseChain = Number(
    targets[0]?.base !== undefined ? attribute(targets[0].base.manifest, 'chainLength') : 0,
  );
  const bytesTotal = plans.reduce((sum, plan) => sum + plan.disk.virtualSize, 0);
  for (const target of targets) {
    const base = target.base;
    target.writer = await target.repository.createRestorePointWriter(
      {
        vm: { uuid: vm.uuid, name: vm.name, record: vm.record },
        tenant: task.tenantId,
        job: { id: task.job.id, name: task.job.name },
        ...(task.schedule === undefined
          ? {}
          : { schedule: { id: task.schedule.id, name: task.schedule.name } }),
        attributes: {
          snapshotUuid: snapshot.uuid,
          snapshotTakenAt: snapshot.takenAt.toISOString(),
          taskId: task.taskId,
          chainLength: incremental ? (Number.isFinite(baseChain) ? baseChain : 0) + 1 : 0,
          disks: plans.map((plan) => ({ key: plan.key, mode: plan.mode, reason: plan.reason })),
          [RECORDED_VIFS_ATTRIBUTE]: recordVifs(vm),
        },
      },
      {
        concurrency: settings.concurrency,
        signal: context.signal,
        expectedBytes: bytesTotal,
        createdAt: snapshot.takenAt,
        // An incremental run mostly reuses the previous backup's chunks: no need to list them all.
        knownChunks: base !== undefined ? { restorePoints: [base.manifest.id] } : 'list',
      },
    );
  }
  const disks: DiskBackupResult[] = [];
  let bytesBefore = 0;
  for (const plan of plans) {
    context.signal.throwIfAborted();
    const exported = await pool.exportVhd(plan.disk.vdiRef, {
      ...(plan.baseDisk !== undefined ? { baseVdiRef: plan.baseDisk.vdiRef } : {}),
      signal: context.signal,
    });
    let bytes = 0;
    let furthest = 0;
    const { metadata, blocks } = await openVhdStream(exported);
    if (metadata.footer.currentSize !== plan.disk.virtualSize) {
      await blocks.return();
      throw new BackupJobError(
        'DISK_MISMATCH',
        `the export of disk ${plan.key} of VM "${vm.name}" is ${metadata.footer.currentSize} bytes but XAPI reports ${plan.disk.virtualSize}; retry the backup`,
      );
    }
    async function* counted(): AsyncGenerator<VhdStreamBlock, void, undefined> {
      for await (const block of blocks) {
        bytes += VHD_BLOCK_SIZE;
        furthest = Math.max(furthest, Math.min((block.index + 1) * VHD_BLOCK_SIZE, plan.disk.virtualSize));
        context.reportProgress({ step: `disk ${plan.key}`, bytesDone: bytesBefore + furthest, bytesTotal });
        yield block;
      }
    }
    const fanout = new BlockFanout(counted(), targets.length);
    try {
      // Settled, not raced: on a failure every writer has stopped before the caller aborts them.
      const settled = await Promise.allSettled(
        targets.map(async (target, index) => {
          const writer = target.writer;
          if (writer === undefined) throw new Error('writer not started');
          const base = plan.mode === 'delta' ? target.base?.reader.disk(plan.key) : undefined;
          await writer.writeDisk(
            {
              key: plan.key,
              virtualSize: plan.disk.virtualSize,
              uuid: plan.disk.vdiUuid,
              name: plan.disk.name,
            },
            wholeBlocks(fanout.consumer(index), plan.disk.virtualSize, base),
            base !== undefined ? { base } : {},
          );
        }),
      );
      for (const outcome of settled) if (outcome.status === 'rejected') throw outcome.reason;
    } finally {
      await fanout.close();
    }
    bytesBefore += plan.disk.virtualSize;
    disks.push({ key: plan.key, mode: plan.mode, reason: plan.reason, bytes });
  }
  const restorePoints: CommittedRestorePoint[] = [];
  for (const target of targets) {
    const writer = target.writer;
    if (writer === undefined) continue;
    const manifest = await writer.commit();
    restorePoints.push({
      remoteId: target.access.id,
      manifestKey: manifestKey(manifest.id),
      vmUuid: vm.uuid,
      vmName: vm.name,
      kind: incremental ? 'incremental' : 'full',
      logicalBytes: manifest.sizes.logicalBytes,
      storedBytes: manifest.sizes.uploadedBytes,
      takenAt: snapshot.takenAt.toISOString(),
    });
  }
  context.reportProgress({ step: 'committed', bytesDone: bytesTotal, bytesTotal });
  return { restorePoints, disks, snapshot: snapshot.uuid };
}
