import { Readable } from 'node:stream';
import { type TaskExecutionContext, withDiskStream } from '@haven/plugin-sdk';
import { isArchiveManifestKey } from '@haven/job-backup-full/archive';
import { ChunkIntegrityError, restorePointIdOfKey, type DiskReader } from '@haven/repository';
import {
  createVhdStream,
  VHD_BLOCK_SIZE,
  VHD_MAX_VIRTUAL_SIZE,
  VHD_SECTOR_SIZE,
  vhdStreamLength,
} from '@haven/vhd';
import {
  RECORDED_VIFS_ATTRIBUTE,
  readRecordedVifs,
  XapiPool,
  type RecordedVif,
  type SrInfo,
  type VmInfo,
} from '@haven/xapi';
import { restoreArchiveVm } from './restore-archive';
import { planRestoredVifs, type NetworkMatch } from './restored-vif.plan';
import { openCatalogRepository } from './catalog.repository';

/** Task type of restore runs (queued by the scheduler's RestoreLauncher). */
export const RESTORE_VM_TASK = 'restore.vm';

/** Marks a VM created by a restore with the catalog id of its restore point. */
export const RESTORED_FROM_KEY = 'haven:restored-from';

/** Marks a VM with the restore task that creates it, so a redelivered task removes a crashed attempt's VM. */
export const RESTORE_TASK_KEY = 'haven:restore-task';

export type RestoreVmErrorCode =
  | 'INVALID_INPUT'
  | 'UNKNOWN_LAYOUT'
  | 'SR_NOT_FOUND'
  | 'NO_DISK_SR'
  | 'RESTORE_POINT_DAMAGED';

export class RestoreVmError extends Error {
  /** Each code names something a second attempt meets again: the task fails on the first. */
  readonly permanent = true;

  constructor(
    readonly code: RestoreVmErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
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
  /** Give the new interfaces the recorded MACs (default: new ones, so the copy never clashes with its original). */
  keepMacs?: boolean;
}

export interface RestoredDisk {
  key: string;
  position: number;
  vdiUuid: string;
  virtualSize: number;
  /**
   * Bytes sent to the pool: a dynamic VHD of the allocated blocks (raw: the whole disk; xva: 0, every
   * disk of a full-backup archive came in its one XVA stream, counted in the result's `archiveBytes`).
   */
  bytesSent: number;
  format: 'vhd' | 'raw' | 'xva';
}

export interface RestoredVif {
  device: string;
  mac: string;
  networkUuid: string;
  networkName: string;
  /** How the network was found: the recorded one (by uuid or name) or the pool's management network. */
  matchedBy: NetworkMatch;
}

export interface RestoreVmResult extends Record<string, unknown> {
  vmUuid: string;
  vmName: string;
  srUuid: string;
  disks: RestoredDisk[];
  vifs: RestoredVif[];
  /** Why the VM has fewer interfaces than the original, when it has. */
  networkWarnings: string[];
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
  const keepMacs = input['keepMacs'];
  if (keepMacs !== undefined && typeof keepMacs !== 'boolean')
    throw new RestoreVmError(
      'INVALID_INPUT',
      `restore task ${taskId} has a keepMacs that is not true or false; start the restore again`,
    );
  return {
    restorePointId: text('restorePointId') ?? '',
    remoteId: text('remoteId') ?? '',
    manifestKey: text('manifestKey') ?? '',
    poolId: text('poolId') ?? '',
    ...(srUuid === undefined ? {} : { srUuid }),
    ...(name === undefined ? {} : { name }),
    ...(keepMacs === undefined ? {} : { keepMacs }),
  };
}

/** The SR asked for, else the pool's default, else the first SR that holds disks (not ISO). */
export function chooseSr(srs: readonly SrInfo[], wanted: string | undefined): SrInfo {
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

/** A VHD holds at most 2 TiB of whole sectors; anything else goes raw. */
function fitsVhd(virtualSize: number): boolean {
  return virtualSize <= VHD_MAX_VIRTUAL_SIZE && virtualSize % VHD_SECTOR_SIZE === 0;
}

/**
 * What a disk sends to the pool: a dynamic VHD of its allocated (non-zero) blocks, so holes cost
 * nothing on the wire or the SR; raw (zeros included) only for a disk a VHD cannot describe.
 * `onPosition` gets how far into the disk the upload has come, in disk bytes.
 */
function diskUpload(
  disk: DiskReader,
  signal: AbortSignal,
  onPosition: (position: number) => void,
): { format: 'vhd' | 'raw'; length: number; stream: Readable; readFailure: () => unknown } {
  // The pool only sees the upload cut short; what went wrong on the repository side is kept here.
  let failure: unknown;
  if (!fitsVhd(disk.virtualSize)) {
    let position = 0;
    const source = disk.createReadStream({ signal });
    source.once('error', (error) => (failure ??= error));
    const stream = counted(source, (bytes) => onPosition((position += bytes)));
    return { format: 'raw', length: disk.virtualSize, stream, readFailure: () => failure };
  }
  const allocated = disk.allocatedBlocks;
  // createVhdStream asks for the blocks in this same order: serve them from one read-ahead pass.
  const blocks = disk.blocks({ signal, readAhead: 4 });
  const stream = createVhdStream({
    virtualSize: disk.virtualSize,
    allocatedBlocks: allocated,
    type: 'dynamic',
    signal,
    readBlock: async (index) => {
      const next = await blocks.next().catch((error: unknown) => {
        failure ??= error;
        throw error;
      });
      if (next.done === true || next.value.index !== index)
        throw new Error(`disk ${disk.key}: block ${index} was asked out of order while restoring`);
      onPosition(Math.min((index + 1) * VHD_BLOCK_SIZE, disk.virtualSize));
      return next.value.data;
    },
  });
  stream.once('close', () => void blocks.return(undefined));
  return {
    format: 'vhd',
    length: vhdStreamLength({ virtualSize: disk.virtualSize, allocatedBlocks: allocated }),
    stream,
    readFailure: () => failure,
  };
}

/** Position of a disk on the new VM: its key (the VBD position at backup time), else its rank. */
function positionOf(disk: DiskReader, rank: number, taken: Set<number>): number {
  const parsed = Number(disk.key);
  const position = Number.isInteger(parsed) && parsed >= 0 && !taken.has(parsed) ? parsed : rank;
  taken.add(position);
  return position;
}

/**
 * Gives the new VM the interfaces the backup recorded, each on the same network of the target pool
 * (by uuid, then name) or else its management network; says in the log and the result what it
 * did, and why an interface is missing.
 */
async function restoreVifs(
  pool: XapiPool,
  vmRef: string,
  attribute: unknown,
  options: { keepMacs: boolean; log: TaskExecutionContext['log'] },
): Promise<{ vifs: RestoredVif[]; networkWarnings: string[] }> {
  const networkWarnings: string[] = [];
  const warn = (message: string, details: Record<string, unknown> = {}): void => {
    networkWarnings.push(message);
    options.log('warn', message, details);
  };
  const read = readRecordedVifs(attribute);
  if (read === undefined) {
    warn(
      'the restore point records no network interfaces (backed up before Haven recorded them): the VM has none',
    );
    return { vifs: [], networkWarnings };
  }
  if (read.malformed > 0)
    warn(`${read.malformed} recorded network interface(s) are unreadable in the manifest and were left out`);
  if (read.vifs.length === 0) return { vifs: [], networkWarnings };
  const { plans, skipped } = planRestoredVifs(read.vifs, await pool.listNetworks(), options);
  for (const vif of skipped)
    warn(
      `interface ${vif.device} (network "${vif.networkName}") left out: the target pool has neither that network nor a management network`,
      describeRecorded(vif),
    );
  const vifs: RestoredVif[] = [];
  for (const plan of plans) {
    const created = await pool.createVif(vmRef, {
      device: plan.device,
      networkRef: plan.network.ref,
      mtu: plan.mtu,
      ...(plan.mac === undefined ? {} : { mac: plan.mac }),
    });
    if (plan.matchedBy === 'management')
      warn(
        `interface ${plan.device}: network "${plan.recorded.networkName}" (${plan.recorded.networkUuid}) is not on the target pool; connected to the management network "${plan.network.name}" instead`,
        { ...describeRecorded(plan.recorded), network: plan.network.uuid },
      );
    else
      options.log('info', `interface ${plan.device} restored on network "${plan.network.name}"`, {
        matchedBy: plan.matchedBy,
        network: plan.network.uuid,
        mac: created.mac,
      });
    vifs.push({
      device: created.device,
      mac: created.mac,
      networkUuid: plan.network.uuid,
      networkName: plan.network.name,
      matchedBy: plan.matchedBy,
    });
  }
  return { vifs, networkWarnings };
}

function describeRecorded(vif: RecordedVif): Record<string, unknown> {
  return { device: vif.device, recordedNetwork: vif.networkUuid, recordedNetworkName: vif.networkName };
}

/**
 * Restores a restore point as a new halted VM: VM from the manifest's record, its network
 * interfaces as recorded, then each disk created on the chosen SR, written from the repository (a
 * dynamic VHD of the allocated blocks, streamed) and plugged at its position. A failure removes
 * what was created, so no half-restored VM is left visible.
 */
export async function executeRestoreVm(
  task: { taskId: string; input: Record<string, unknown> },
  context: Pick<TaskExecutionContext, 'signal' | 'reportProgress' | 'resources' | 'log'>,
): Promise<RestoreVmResult> {
  const input = readInput(task.taskId, task.input);
  // A full-backup archive is one XVA, imported whole (restore-archive.ts).
  if (isArchiveManifestKey(input.manifestKey)) return restoreArchiveVm(task.taskId, input, context);
  const pointId = restorePointIdOfKey(input.manifestKey);
  if (pointId === undefined)
    throw new RestoreVmError(
      'UNKNOWN_LAYOUT',
      `restore point ${input.restorePointId} has an unexpected manifest key ${input.manifestKey}; run haven remotes sync`,
    );
  const remote = await context.resources.remote(input.remoteId);
  try {
    const repository = await openCatalogRepository(remote);
    const point = await repository.openRestorePoint(pointId, context.signal);
    const access = await context.resources.pool(input.poolId);
    const pool = await XapiPool.connect(access, context.signal);
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
        const networks = await restoreVifs(pool, vm.ref, manifest.attributes?.[RECORDED_VIFS_ATTRIBUTE], {
          keepMacs: input.keepMacs === true,
          log: context.log,
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
          const before = bytesDone;
          // One of the worker's disk streams while the disk is read and sent.
          const upload = await withDiskStream(context, `disk ${disk.key}`, context.signal, async () => {
            const stream = diskUpload(disk, context.signal, (position) => {
              bytesDone = before + position;
              context.reportProgress({ step: `writing disk ${disk.key}`, bytesDone, bytesTotal });
            });
            await pool
              .importVdi(vdi.ref, stream.stream, {
                format: stream.format,
                length: stream.length,
                signal: context.signal,
              })
              .catch((error: unknown) => {
                const cause = stream.readFailure();
                // A damaged or missing chunk stays so: no retry, and the repository's own words.
                if (cause instanceof ChunkIntegrityError)
                  throw new RestoreVmError('RESTORE_POINT_DAMAGED', cause.message, { cause });
                throw error;
              });
            return stream;
          });
          bytesDone = before + disk.virtualSize;
          disks.push({
            key: disk.key,
            position,
            vdiUuid: vdi.uuid,
            virtualSize: disk.virtualSize,
            bytesSent: upload.length,
            format: upload.format,
          });
        }
        context.reportProgress({ step: 'done', bytesDone: bytesTotal, bytesTotal });
        return { vmUuid: vm.uuid, vmName, srUuid: sr.uuid, disks, ...networks };
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
