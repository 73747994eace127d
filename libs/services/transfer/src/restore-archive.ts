import { Readable } from 'node:stream';
import { type TaskExecutionContext, withDiskStream } from '@haven/plugin-sdk';
import {
  ArchiveError,
  ArchiveStore,
  type ArchiveManifest,
  type ArchiveVif,
} from '@haven/job-backup-full/archive';
import { XapiPool, type VmInfo } from '@haven/xapi';
import {
  chooseSr,
  RESTORE_TASK_KEY,
  RESTORED_FROM_KEY,
  type RestoredVif,
  type RestoreVmInput,
  type RestoreVmResult,
} from './restore-vm.executor';
import { openCatalogRepository } from './catalog.repository';

/** Keys of the backed-up VM (its backup marker, the job's snapshot tags) that the restored VM must not carry. */
const HAVEN_KEY_PREFIX = 'haven:';
/** Tags backup.full puts on the snapshot it exports: an imported VM carries them until it is marked. */
const SNAPSHOT_TASK_KEY = 'haven:task';
const SNAPSHOT_VM_KEY = 'haven:vm';

/**
 * A VM an earlier attempt of this restore left: marked with the task, or imported from this very
 * archive (its snapshot's tags) and not marked yet (the worker died between import and marking).
 */
function leftOverBy(vm: VmInfo, taskId: string, manifest: ArchiveManifest): boolean {
  if (vm.otherConfig[RESTORE_TASK_KEY] === taskId) return true;
  return (
    manifest.taskId !== undefined &&
    vm.otherConfig[SNAPSHOT_TASK_KEY] === manifest.taskId &&
    vm.otherConfig[SNAPSHOT_VM_KEY] === manifest.vm.uuid &&
    !(RESTORE_TASK_KEY in vm.otherConfig) &&
    !(RESTORED_FROM_KEY in vm.otherConfig)
  );
}

/**
 * Restores a full-backup archive as a new halted VM: the archive's segments are read in order,
 * unsealed and checked against the manifest's SHA-256, and streamed into an XVA import on the chosen
 * SR. A damaged or missing segment fails the import naming it; nothing half-imported stays.
 */
export async function restoreArchiveVm(
  taskId: string,
  input: RestoreVmInput,
  context: Pick<TaskExecutionContext, 'signal' | 'reportProgress' | 'resources' | 'log'>,
): Promise<RestoreVmResult> {
  const remote = await context.resources.remote(input.remoteId);
  try {
    const repository = await openCatalogRepository(remote);
    const archives = ArchiveStore.forRepository(repository);
    const manifest = await archives.readManifest(input.manifestKey, context.signal);
    const access = await context.resources.pool(input.poolId);
    const pool = await XapiPool.connect(access, context.signal);
    try {
      // A worker that died mid-restore left its VM behind: this attempt starts clean.
      for (const leftover of await pool.listVms())
        if (leftOverBy(leftover, taskId, manifest)) {
          context.log('warn', 'removing the VM of an interrupted attempt of this restore', {
            vm: leftover.uuid,
          });
          await pool.destroyVm(leftover.ref, { withDisks: true });
        }
      const sr = chooseSr(await pool.listSrs(), input.srUuid);
      const vmName =
        input.name ??
        `${manifest.vm.name} (restored ${new Date().toISOString().slice(0, 16).replace('T', ' ')})`;
      const bytesTotal = manifest.totalSize;
      let bytesDone = 0;
      let archiveFailure: ArchiveError | undefined;
      // The Readable below holds the next segment while the import sends the current one; an object
      // store also has its writesInFlight - 1 more fetched meanwhile (a file system none: two held).
      const segments = archives.segments(manifest, context.signal, archives.writesInFlight - 1);
      const source = Readable.from(
        (async function* () {
          try {
            for await (const segment of segments) {
              bytesDone += segment.length;
              context.reportProgress({ step: 'importing XVA', bytesDone, bytesTotal });
              yield segment;
            }
          } catch (error) {
            if (error instanceof ArchiveError) archiveFailure = error;
            throw error;
          }
        })(),
        { objectMode: false, highWaterMark: 1 },
      );
      context.reportProgress({ step: 'importing XVA', bytesDone, bytesTotal });
      let vm: VmInfo | undefined;
      try {
        vm = await withDiskStream(context, 'the VM archive', context.signal, () =>
          pool.importVm(source, { srUuid: sr.uuid, length: bytesTotal, signal: context.signal }),
        );
        await pool.setOtherConfig(vm.ref, 'VM', RESTORE_TASK_KEY, taskId);
        for (const stale of Object.keys(vm.otherConfig))
          if (stale.startsWith(HAVEN_KEY_PREFIX) && stale !== RESTORE_TASK_KEY)
            await pool.setOtherConfig(vm.ref, 'VM', stale, null);
        await pool.setOtherConfig(vm.ref, 'VM', RESTORED_FROM_KEY, input.restorePointId);
        await pool.renameVm(vm.ref, vmName);
        const restored = await pool.getVmByRef(vm.ref);
        const networks = describeVifs(restored, manifest.vm.vifs, context.log);
        context.reportProgress({ step: 'done', bytesDone: bytesTotal, bytesTotal });
        return {
          vmUuid: restored.uuid,
          vmName,
          srUuid: sr.uuid,
          archiveBytes: bytesTotal,
          disks: [...restored.disks]
            .sort((a, b) => a.position - b.position)
            .map((disk) => ({
              key: String(disk.position),
              position: disk.position,
              vdiUuid: disk.vdiUuid,
              virtualSize: disk.virtualSize,
              bytesSent: 0,
              format: 'xva' as const,
            })),
          ...networks,
        };
      } catch (error) {
        if (vm !== undefined)
          await pool.destroyVm(vm.ref, { withDisks: true }).catch((cleanup: unknown) => {
            context.log('warn', 'removing the partly restored VM failed', {
              vm: vm?.uuid,
              error: String(cleanup),
            });
          });
        // The import reports "the data source failed": the archive's own error names the segment.
        throw archiveFailure ?? error;
      }
    } finally {
      await pool.close();
    }
  } finally {
    await remote.store.close().catch(() => undefined);
  }
}

/**
 * The interfaces the XVA import created, each matched against the one recorded at backup (the
 * import picks the networks itself): same network uuid, else same name, else a warning.
 */
function describeVifs(
  restored: VmInfo,
  recorded: ArchiveVif[] | undefined,
  log: TaskExecutionContext['log'],
): { vifs: RestoredVif[]; networkWarnings: string[] } {
  const networkWarnings: string[] = [];
  const vifs = restored.vifs.map((vif): RestoredVif => {
    const before = recorded?.find((candidate) => candidate.device === vif.device);
    const matchedBy =
      before === undefined || before.networkUuid === vif.networkUuid
        ? 'uuid'
        : before.networkName === vif.networkName
          ? 'name'
          : 'management';
    if (matchedBy === 'management' && before !== undefined) {
      const message = `interface ${vif.device}: network "${before.networkName}" (${before.networkUuid}) is not on the target pool; the import connected it to "${vif.networkName}"`;
      networkWarnings.push(message);
      log('warn', message, { device: vif.device, network: vif.networkUuid });
    }
    return {
      device: vif.device,
      mac: vif.mac,
      networkUuid: vif.networkUuid,
      networkName: vif.networkName,
      matchedBy,
    };
  });
  return { vifs, networkWarnings };
}
