import type {
  CommittedRestorePoint,
  RemoteAccess,
  RestorePointReference,
  RetainedRestorePoint,
  ScheduleDefinition,
  TaskExecution,
  TaskExecutionContext,
} from '@haven/plugin-sdk';
import { withDiskStream } from '@haven/plugin-sdk';
import {
  isRepositoryError,
  manifestKey,
  type CompressionSetting,
  type Repository,
  type RestorePointManifest,
  type RestorePointReader,
  type RestorePointWriter,
} from '@haven/repository';
import {
  RECORDED_VIFS_ATTRIBUTE,
  recordVifs,
  XapiError,
  XapiPool,
  XapiTransferError,
  XapiUnreachableError,
  type SnapshotInfo,
  type VmInfo,
} from '@haven/xapi';
import { BackupJobError } from './backup-incremental.errors';
import { openOrInitRemoteRepository } from './remote-repository';
import { backupSettings, snapshotName, type BackupIncrementalSettings } from './backup-incremental.settings';
import { inspectBase, isDamaged, noDamage, type BaseDamage } from './base.inspection';
import { changedBlocksOfBitmap } from './cbt.blocks';
import {
  applyCbt,
  chainAttributes,
  manifestAttribute,
  planDisks,
  type CbtOutcome,
  type DiskBackupMode,
  type DiskBackupReason,
  type DiskPlan,
  type DiskTransport,
} from './disk.plan';
import { transferDisk, type DiskReadPath, type WriteTurn } from './disk.transfer';
import { applyRetention, hasRetention, retainOnEveryRemote } from './restore-point.retention';
import { snapshotsToKeep, snapshotsToRemove } from './snapshot.retention';
import { withVmBackupSession } from './vm-backup.session';

export type { DiskBackupMode, DiskBackupReason, DiskTransport } from './disk.plan';

/** other_config keys that tie a snapshot to the job and VM it was taken for. */
export const SNAPSHOT_JOB_KEY = 'haven:job';
export const SNAPSHOT_VM_KEY = 'haven:vm';
export const SNAPSHOT_TASK_KEY = 'haven:task';
/** The VM marker key (other_config `haven:backup`). */
const MiB = 1024 * 1024;

/** How the per-disk log line says where the data came from. */
const READ_PATH_TEXT: Record<DiskReadPath, string> = {
  nbd: ' (changed blocks over NBD)',
  'raw-blocks-export':
    ' (changed blocks through the export_raw_vdi blocks= fallback: the pool offers no NBD)',
  'vhd-export': '',
  none: '',
};

export interface DiskBackupResult {
  key: string;
  mode: DiskBackupMode;
  reason: DiskBackupReason;
  /** Bytes read from the pool for this disk (2 MiB per exported block). */
  bytes: number;
  transport?: DiskTransport;
  /** Bytes uploaded (new chunks, sealed) summed over the remotes. */
  bytesStored?: number;
  seconds?: number;
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
  base?: { manifest: RestorePointManifest; reader?: RestorePointReader; damage: BaseDamage };
  /**
   * The check of the base's chunks, run while the host takes the snapshot (on a big disk both take
   * a while): `base.damage` is final once it has resolved.
   */
  inspected?: Promise<void>;
  writer?: RestorePointWriter;
}

function attribute(manifest: RestorePointManifest, name: string): unknown {
  return manifestAttribute(manifest, name);
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
  return withVmBackupSession(
    task,
    context,
    {
      retries: settings.retries,
      label: 'backup',
      missingVm: (message) => new BackupJobError('INVALID_SELECTION', message),
      ...(settings.vmTimeoutSeconds !== undefined ? { timeoutSeconds: settings.vmTimeoutSeconds } : {}),
    },
    (pool, vmUuid, timed) => backupOnce(pool, vmUuid, task, timed, settings),
  );
}

async function backupOnce(
  pool: XapiPool,
  vmUuid: string,
  task: TaskExecution,
  context: TaskExecutionContext,
  settings: BackupIncrementalSettings,
): Promise<VmBackupResult> {
  const vm = await pool.getVm(vmUuid);
  if (settings.useCbt) await enableCbt(pool, vm, context);
  const tags = { [SNAPSHOT_JOB_KEY]: task.job.id, [SNAPSHOT_VM_KEY]: vm.uuid };
  const previous = await pool.listSnapshots(vm.uuid, { otherConfig: tags });
  const keep = snapshotsToKeep(task.schedule?.retention);
  const targets: BackupTarget[] = [];
  try {
    context.reportProgress({ step: 'opening remotes' });
    for (const remoteId of task.job.remoteIds) {
      const remote = await context.resources.remote(remoteId);
      try {
        targets.push(await openTarget(remote, task, vm, settings, context));
      } catch (error) {
        await remote.store.close().catch(() => undefined);
        throw error;
      }
    }
    const done = alreadyCommitted(targets, task, vm, previous);
    if (done !== undefined) {
      // Redelivered after this task committed everywhere (the worker died before reporting):
      // report that backup again instead of taking another one.
      await removeSnapshots(pool, snapshotsToRemove(previous, done.snapshot, keep), context);
      return done;
    }
    context.reportProgress({ step: 'taking snapshot' });
    // A base check still running when this fails is waited for below (finally).
    const snapshot = await pool.snapshotVm(vm, {
      name: snapshotName(settings.snapshotNameTemplate, {
        vm: vm.name,
        job: task.job.name,
        date: new Date(),
      }),
      otherConfig: { ...tags, [SNAPSHOT_TASK_KEY]: task.taskId },
      signal: context.signal,
    });
    await baseChecked(targets, pool, snapshot, vm, context);
    let result: VmBackupResult;
    try {
      result = await writeRestorePoints(pool, vm, snapshot, previous, targets, task, context, settings);
    } catch (error) {
      for (const target of targets) await target.writer?.abort().catch(() => undefined);
      // Nothing of this attempt may stay visible: its snapshot goes, the previous one stays the base.
      await discardSnapshot(pool, snapshot, vm, context);
      throw error;
    }
    // The new snapshot is kept (the next run's base), and the newest others up to the schedule's count.
    await removeSnapshots(pool, snapshotsToRemove([...previous, snapshot], snapshot.uuid, keep), context);
    if (hasRetention(task.schedule)) await retain(result, targets, task, task.schedule, vm, context);
    return result;
  } finally {
    // No base check still reading a store that closes (every way out: a remote that failed to
    // open, a redelivery, a snapshot that failed).
    await Promise.allSettled(inspections(targets));
    for (const target of targets) await target.access.store.close().catch(() => undefined);
  }
}

/** Turns CBT on for the VM's disks that lack it: snapshots taken from now on carry the log. */
async function enableCbt(pool: XapiPool, vm: VmInfo, context: TaskExecutionContext): Promise<void> {
  for (const disk of vm.disks) {
    if (disk.cbtEnabled) continue;
    await pool.enableCbt(disk.vdiRef);
    context.log(
      'info',
      `CBT enabled on disk ${disk.position} of VM "${vm.name}"; it is used from the next backup`,
      {
        vm: vm.name,
        vmUuid: vm.uuid,
        disk: String(disk.position),
        vdi: disk.vdiUuid,
      },
    );
  }
}

/** Removes the snapshot of an attempt that is not going on; a failure is logged for a person. */
async function discardSnapshot(
  pool: XapiPool,
  snapshot: SnapshotInfo,
  vm: VmInfo,
  context: TaskExecutionContext,
): Promise<void> {
  await pool.destroySnapshot(snapshot).catch((cleanup: unknown) => {
    context.log(
      'error',
      `removing snapshot ${snapshot.uuid} of a failed backup of VM "${vm.name}" failed; remove it by hand`,
      { vm: vm.name, vmUuid: vm.uuid, snapshot: snapshot.uuid, error: String(cleanup) },
    );
  });
}

async function removeSnapshots(
  pool: XapiPool,
  snapshots: readonly SnapshotInfo[],
  context: TaskExecutionContext,
): Promise<void> {
  for (const old of snapshots) {
    await pool.destroySnapshot(old).catch((error: unknown) => {
      context.log('warn', `removing the backup snapshot ${old.uuid} failed; the next run tries again`, {
        snapshot: old.uuid,
        error: String(error),
      });
    });
  }
}

/** The schedule's retention on every remote, after the new restore points are committed. */
function retain(
  result: VmBackupResult,
  targets: readonly BackupTarget[],
  task: TaskExecution,
  schedule: ScheduleDefinition,
  vm: VmInfo,
  context: TaskExecutionContext,
): Promise<void> {
  return retainOnEveryRemote(result, targets, context, (target) =>
    applyRetention(target.repository, target.access.id, task, schedule, vm.uuid, context.signal),
  );
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
        committedAt: manifest.committedAt,
      };
    }),
  };
}

/** The chunk compression a job's settings ask for. */
function chunkCompressionOf(settings: BackupIncrementalSettings): CompressionSetting {
  return {
    codec: settings.compression,
    ...(settings.compressionLevel !== undefined ? { level: settings.compressionLevel } : {}),
  };
}

async function openTarget(
  access: RemoteAccess,
  task: TaskExecution,
  vm: VmInfo,
  settings: BackupIncrementalSettings,
  context: TaskExecutionContext,
): Promise<BackupTarget> {
  const signal = context.signal;
  const repository = await openOrInitRemoteRepository(access, { compression: chunkCompressionOf(settings) });
  const points = await repository.listRestorePoints({ vmUuid: vm.uuid, tenant: task.tenantId, signal });
  const ofJob = points
    .filter((point) => point.manifest.job?.id === task.job.id)
    .sort((a, b) => a.manifest.committedAt.localeCompare(b.manifest.committedAt) || a.id.localeCompare(b.id));
  const newest = ofJob.at(-1);
  if (newest === undefined) return { access, repository };
  let reader: RestorePointReader;
  try {
    reader = await repository.openRestorePoint(newest.id, signal);
  } catch (error) {
    if (!isRepositoryError(error, 'INDEX_DAMAGED')) throw error;
    const damage: BaseDamage = { disks: 'all', chunks: new Set(), reasons: [error.message] };
    logDamage(context, vm, access, newest.label, damage);
    return { access, repository, base: { manifest: newest.manifest, damage } };
  }
  // The restore point this very task committed before a crash is not a base to check.
  const own = attribute(newest.manifest, 'taskId') === task.taskId;
  const warn = (message: string): void =>
    context.log('warn', message, { vm: vm.name, vmUuid: vm.uuid, remote: access.name });
  const base = { manifest: newest.manifest, reader, damage: noDamage() };
  if (own) return { access, repository, base };
  const inspected = inspectBase(repository, reader, settings.verifyBase, warn, signal).then((damage) => {
    base.damage = damage;
    if (isDamaged(damage)) logDamage(context, vm, access, newest.label, damage);
  });
  // Awaited before the base is used (baseChecked); never an unhandled rejection meanwhile.
  inspected.catch(() => undefined);
  return { access, repository, base, inspected };
}

function inspections(targets: readonly BackupTarget[]): Promise<void>[] {
  return targets.map((target) => target.inspected ?? Promise.resolve());
}

/** Waits for every target's base check; on a failure the snapshot just taken goes again. */
async function baseChecked(
  targets: readonly BackupTarget[],
  pool: XapiPool,
  snapshot: SnapshotInfo,
  vm: VmInfo,
  context: TaskExecutionContext,
): Promise<void> {
  const settled = await Promise.allSettled(inspections(targets));
  const failed = settled.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
  if (failed === undefined) return;
  await discardSnapshot(pool, snapshot, vm, context);
  throw failed.reason;
}

function logDamage(
  context: TaskExecutionContext,
  vm: VmInfo,
  access: RemoteAccess,
  label: string,
  damage: BaseDamage,
): void {
  context.log(
    'warn',
    `the base restore point ${label} of VM "${vm.name}" on remote ${access.name} is damaged: a full backup replaces it`,
    {
      vm: vm.name,
      vmUuid: vm.uuid,
      remote: access.name,
      disks: damage.disks === 'all' ? 'all' : [...damage.disks],
      reasons: damage.reasons.slice(0, 20),
    },
  );
}

/** Asks CBT for the changed blocks of every delta disk; a reset log turns the disk into a full. */
async function resolveCbt(
  pool: XapiPool,
  vm: VmInfo,
  plans: readonly DiskPlan[],
  context: TaskExecutionContext,
): Promise<DiskPlan[]> {
  const resolved: DiskPlan[] = [];
  for (const plan of plans) {
    const baseDisk = plan.baseDisk;
    if (plan.mode !== 'delta' || baseDisk === undefined) {
      resolved.push(plan);
      continue;
    }
    let outcome: CbtOutcome;
    if (!baseDisk.cbtEnabled) {
      outcome = { kind: 'not-tracked' };
    } else {
      try {
        const bitmap = await pool.listChangedBlocks(baseDisk.vdiRef, plan.disk.vdiRef, context.signal);
        outcome = { kind: 'changed', blocks: changedBlocksOfBitmap(bitmap, plan.disk.virtualSize) };
      } catch (error) {
        const transient = error instanceof XapiUnreachableError || error instanceof XapiTransferError;
        const reset = (error instanceof XapiError && !transient) || error instanceof BackupJobError;
        if (!reset) throw error;
        outcome = { kind: 'reset', error: error.message };
        context.log(
          'warn',
          `CBT of disk ${plan.key} of VM "${vm.name}" no longer links the base snapshot (reset or disabled): full backup of that disk`,
          { vm: vm.name, vmUuid: vm.uuid, disk: plan.key, reason: 'cbt-reset', error: error.message },
        );
      }
    }
    resolved.push(applyCbt(plan, outcome));
  }
  return resolved;
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
  let plans = planDisks({
    disks: snapshot.disks,
    bases: targets.map((target) =>
      target.base === undefined
        ? undefined
        : { manifest: target.base.manifest, damagedDisks: target.base.damage.disks },
    ),
    previous,
    fullInterval: settings.fullInterval,
    fullIntervalDays: settings.fullIntervalDays,
    now: snapshot.takenAt,
  });
  if (plans.length === 0) {
    throw new BackupJobError('NO_DISKS', `VM "${vm.name}" (${vm.uuid}) has no disk to back up`);
  }
  if (settings.useCbt) plans = await resolveCbt(pool, vm, plans, context);
  for (const plan of plans) {
    const fallback = ['no-base-snapshot', 'base-damaged', 'cbt-reset'].includes(plan.reason);
    context.log(
      fallback ? 'warn' : 'info',
      `VM "${vm.name}" disk ${plan.key}: ${plan.mode} backup (${plan.reason})${plan.transport === 'cbt' ? `, ${plan.changedBlocks?.length ?? 0} block(s) changed per CBT` : ''}`,
      {
        vm: vm.name,
        vmUuid: vm.uuid,
        disk: plan.key,
        mode: plan.mode,
        reason: plan.reason,
        transport: plan.transport,
      },
    );
  }
  const incremental = plans.some((plan) => plan.mode === 'delta');
  const chain = chainAttributes(plans, targets[0]?.base?.manifest, snapshot.takenAt);
  const bytesTotal = plans.reduce((sum, plan) => sum + plan.disk.virtualSize, 0);
  for (const target of targets) {
    const base = target.base;
    const damaged = base !== undefined && isDamaged(base.damage);
    const rewrite = base?.damage.chunks;
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
          chainLength: chain.chainLength,
          lastFullAt: chain.lastFullAt,
          disks: plans.map((plan) => ({
            key: plan.key,
            mode: plan.mode,
            reason: plan.reason,
            transport: plan.transport,
          })),
          // What a restore needs to rebuild the VM's network interfaces once the VM is gone.
          [RECORDED_VIFS_ATTRIBUTE]: recordVifs(vm),
        },
      },
      {
        concurrency: settings.concurrency,
        signal: context.signal,
        expectedBytes: bytesTotal,
        createdAt: snapshot.takenAt,
        // An incremental run mostly reuses the previous backup's chunks: no need to list them all.
        // Over a damaged base, only a listing says which chunks really are there.
        knownChunks: base?.reader !== undefined && !damaged ? { restorePoints: [base.manifest.id] } : 'list',
        ...(rewrite !== undefined && rewrite.size > 0 ? { rewriteChunks: rewrite } : {}),
        // The job's own: a repository another job started keeps its setting for that job only.
        compression: chunkCompressionOf(settings),
      },
    );
  }

  const progress = new Map<string, number>();
  // The VM's bytes are its disks' summed: each disk goes from 0 to its virtual size.
  const report = (step: string): void =>
    context.reportProgress({
      step,
      vm: { uuid: vm.uuid, name: vm.name },
      bytesDone: [...progress.values()].reduce((sum, bytes) => sum + bytes, 0),
      bytesTotal,
      disks: plans.map((plan) => ({
        key: plan.key,
        name: plan.disk.name,
        bytesDone: progress.get(plan.key) ?? 0,
        bytesTotal: plan.disk.virtualSize,
      })),
    });
  // Disks in parallel: a failure stops the others at once, the first error is thrown.
  const transfers = new AbortController();
  const stop = (): void => transfers.abort(context.signal.reason);
  context.signal.addEventListener('abort', stop, { once: true });
  const results = new Map<string, DiskBackupResult>();
  let failure: Error | undefined;
  // Each disk starts writing after the one before it: restore points list disks in plan order.
  const turns = plans.map(() => {
    let started = (): void => undefined;
    const promise = new Promise<void>((resolve) => (started = resolve));
    return { promise, started: () => started() };
  });
  const queue = plans.map((plan, index) => ({ plan, index }));
  const worker = async (): Promise<void> => {
    for (let next = queue.shift(); next !== undefined && failure === undefined; next = queue.shift()) {
      const { plan, index } = next;
      const turn: WriteTurn = {
        previous: turns[index - 1]?.promise ?? Promise.resolve(),
        started: () => turns[index]?.started(),
      };
      try {
        // One of the worker's disk streams per disk, asked for in plan order (no disk holds a
        // slot while waiting for a later one's turn).
        results.set(
          plan.key,
          await withDiskStream(context, `disk ${plan.key}`, transfers.signal, () =>
            backupDisk(pool, vm, plan, targets, context, transfers.signal, report, progress, turn),
          ),
        );
      } catch (error) {
        failure ??= error instanceof Error ? error : new Error(String(error));
        transfers.abort(failure);
      } finally {
        turn.started();
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(settings.diskConcurrency, plans.length) }, worker));
  } finally {
    context.signal.removeEventListener('abort', stop);
  }
  if (failure !== undefined) throw failure;
  context.signal.throwIfAborted();

  const restorePoints: CommittedRestorePoint[] = [];
  for (const plan of plans) progress.set(plan.key, plan.disk.virtualSize);
  report('committing');
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
      committedAt: manifest.committedAt,
    });
  }
  report('committed');
  const disks = plans
    .map((plan) => results.get(plan.key))
    .filter((r): r is DiskBackupResult => r !== undefined);
  return { restorePoints, disks, snapshot: snapshot.uuid };
}

/** One disk to every remote, with its run-log line (or an error naming the VM and disk). */
async function backupDisk(
  pool: XapiPool,
  vm: VmInfo,
  plan: DiskPlan,
  targets: readonly BackupTarget[],
  context: TaskExecutionContext,
  signal: AbortSignal,
  report: (step: string) => void,
  progress: Map<string, number>,
  turn: WriteTurn,
): Promise<DiskBackupResult> {
  signal.throwIfAborted();
  const label = `disk ${plan.key} of VM "${vm.name}"`;
  const started = performance.now();
  const fields = { vm: vm.name, vmUuid: vm.uuid, disk: plan.key, mode: plan.mode, reason: plan.reason };
  try {
    const destinations = targets.map((target) => {
      if (target.writer === undefined) throw new Error('writer not started');
      const base = plan.mode === 'delta' ? target.base?.reader?.disk(plan.key) : undefined;
      return { writer: target.writer, ...(base !== undefined ? { base } : {}) };
    });
    const outcome = await transferDisk(
      pool,
      plan,
      destinations,
      label,
      (furthest) => {
        progress.set(plan.key, furthest);
        report(`disk ${plan.key}`);
      },
      signal,
      turn,
    );
    const seconds = (performance.now() - started) / 1000;
    const bytesStored = outcome.stored.reduce((sum, disk) => sum + disk.uploadedBytes, 0);
    const mbPerSecond = seconds > 0 ? outcome.bytesRead / MiB / seconds : 0;
    context.log(
      'info',
      `VM "${vm.name}" disk ${plan.key}: ${plan.mode} (${plan.reason}), ${(outcome.bytesRead / MiB).toFixed(1)} MiB read${READ_PATH_TEXT[outcome.readPath]}, ` +
        `${(bytesStored / MiB).toFixed(1)} MiB stored in ${seconds.toFixed(1)} s (${mbPerSecond.toFixed(1)} MiB/s)`,
      {
        ...fields,
        transport: plan.transport,
        readPath: outcome.readPath,
        bytesRead: outcome.bytesRead,
        bytesStored,
        newChunks: outcome.stored.reduce((sum, disk) => sum + disk.uploadedChunks, 0),
        reusedChunks: outcome.stored.reduce((sum, disk) => sum + disk.reusedChunks, 0),
        remotes: outcome.stored.map((disk, index) => ({
          remote: targets[index]?.access.name,
          uploadedBytes: disk.uploadedBytes,
          uploadedChunks: disk.uploadedChunks,
          reusedChunks: disk.reusedChunks,
        })),
        seconds: Number(seconds.toFixed(3)),
        mbPerSecond: Number(mbPerSecond.toFixed(1)),
      },
    );
    return {
      key: plan.key,
      mode: plan.mode,
      reason: plan.reason,
      bytes: outcome.bytesRead,
      transport: plan.transport,
      bytesStored,
      seconds: Number(seconds.toFixed(3)),
    };
  } catch (error) {
    // A disk stopped because another one failed (or the task was cancelled) is not an error of its
    // own: the failing disk logs before it aborts the others, so only it finds the signal unaborted.
    // (The stopped ones may reject with the failing disk's very error, passed on as the abort reason.)
    if (!signal.aborted) {
      context.log(
        'error',
        `backup of ${label} failed: ${error instanceof Error ? error.message : String(error)}`,
        {
          ...fields,
          error: String(error),
        },
      );
    }
    throw error;
  }
}
