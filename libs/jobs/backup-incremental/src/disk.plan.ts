import type { RestorePointManifest } from '@haven/repository';
import type { DiskInfo, SnapshotInfo } from '@haven/xapi';

export type DiskBackupMode = 'full' | 'delta';
/** Why a disk was backed up in full or as a delta; recorded in the task result and the manifest. */
export type DiskBackupReason =
  | 'no-base-restore-point'
  | 'no-base-snapshot'
  | 'base-damaged'
  | 'cbt-reset'
  | 'disk-resized'
  | 'full-interval'
  | 'full-interval-days'
  | 'base-available';
/** How a disk's data was read: a whole or base-relative VHD export, or only the CBT-changed blocks. */
export type DiskTransport = 'vhd' | 'cbt';

/** The newest restore point of the job and VM on one remote, and what of it is damaged. */
export interface PlanBase {
  manifest: RestorePointManifest;
  /** Keys of disks whose stored data is damaged (missing or bad chunks), or all of them. */
  damagedDisks: ReadonlySet<string> | 'all';
}

export interface DiskPlan {
  disk: DiskInfo;
  key: string;
  mode: DiskBackupMode;
  reason: DiskBackupReason;
  transport: DiskTransport;
  /** The same disk in the base snapshot (delta only). */
  baseDisk?: DiskInfo;
  /** Blocks CBT reports changed since the base snapshot (transport `cbt`). */
  changedBlocks?: readonly number[];
}

export interface PlanInput {
  /** The disks of the snapshot just taken. */
  disks: readonly DiskInfo[];
  /** Per remote of the job: its base, or undefined when it holds none. */
  bases: readonly (PlanBase | undefined)[];
  /** The job's snapshots of the VM left on the host before this run. */
  previous: readonly SnapshotInfo[];
  /** Full after this many incrementals in a row; 0 = never. */
  fullInterval: number;
  /** Full when the last full is at least this many days old; 0 = never. */
  fullIntervalDays: number;
  /** The time the new snapshot was taken (the host's clock, like the recorded times). */
  now: Date;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** The disk's key inside restore points: its VBD position, stable across snapshots. */
export function diskKey(disk: Pick<DiskInfo, 'position'>): string {
  return String(disk.position);
}

export function manifestAttribute(manifest: RestorePointManifest, name: string): unknown {
  return manifest.attributes?.[name];
}

/** Restore points since (and excluding) the last full one; 0 for a full one. */
export function chainLength(manifest: RestorePointManifest): number {
  const value = Number(manifestAttribute(manifest, 'chainLength'));
  return Number.isFinite(value) && value >= 0 ? value : 0;
}

/**
 * When the last full backup of the chain was taken: recorded as `lastFullAt`, or for a full
 * restore point from before that attribute, its own snapshot time; unknown otherwise.
 */
export function lastFullAt(manifest: RestorePointManifest): Date | undefined {
  const recorded = manifestAttribute(manifest, 'lastFullAt');
  if (typeof recorded === 'string') return validDate(recorded);
  if (chainLength(manifest) !== 0) return undefined;
  const taken = manifestAttribute(manifest, 'snapshotTakenAt');
  return validDate(typeof taken === 'string' ? taken : manifest.createdAt);
}

/** When the base's snapshot was taken, as the writer recorded it; unknown for older restore points. */
function snapshotTakenAt(manifest: RestorePointManifest): Date | undefined {
  const taken = manifestAttribute(manifest, 'snapshotTakenAt');
  return typeof taken === 'string' ? validDate(taken) : undefined;
}

function validDate(text: string): Date | undefined {
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/**
 * With no usable base snapshot: whether a restore point, not a snapshot, is what is missing. Either
 * the remotes' newest restore points are of different snapshots, one of which the host still has
 * (a remote is behind: added to the job later, missed a run, lost its newest restore point); or
 * they agree on a base whose snapshot is gone while the job snapshotted the VM again at or after
 * it (that later backup's restore point was deleted by hand).
 */
function restorePointIsWhatIsMissing(input: PlanInput, sameBase: boolean): boolean {
  const onHost = (uuid: unknown) => input.previous.some((candidate) => candidate.uuid === uuid);
  if (!sameBase)
    return input.bases.some(
      (base) => base !== undefined && onHost(manifestAttribute(base.manifest, 'snapshotUuid')),
    );
  const base = input.bases[0];
  const takenAt = base === undefined ? undefined : snapshotTakenAt(base.manifest);
  if (base === undefined || takenAt === undefined) return false;
  const baseUuid = manifestAttribute(base.manifest, 'snapshotUuid');
  return input.previous.some(
    (candidate) => candidate.uuid !== baseUuid && candidate.takenAt.getTime() >= takenAt.getTime(),
  );
}

/**
 * Full or delta for each disk, and why. A delta needs, on every remote, a sound base restore
 * point holding the disk at the same size, taken from a snapshot still on the host, within the
 * full intervals. The first reason that applies is the one recorded.
 */
export function planDisks(input: PlanInput): DiskPlan[] {
  const { bases } = input;
  const baseSnapshotUuid =
    bases[0] !== undefined ? manifestAttribute(bases[0].manifest, 'snapshotUuid') : undefined;
  const sameBase = bases.every(
    (base) => base !== undefined && manifestAttribute(base.manifest, 'snapshotUuid') === baseSnapshotUuid,
  );
  const baseSnapshot = sameBase
    ? input.previous.find((candidate) => candidate.uuid === baseSnapshotUuid)
    : undefined;
  const restorePointMissing = baseSnapshot === undefined && restorePointIsWhatIsMissing(input, sameBase);
  const now = input.now.getTime();
  return [...input.disks]
    .sort((a, b) => a.position - b.position)
    .map((disk): DiskPlan => {
      const key = diskKey(disk);
      const full = (reason: DiskBackupReason): DiskPlan => ({
        disk,
        key,
        mode: 'full',
        reason,
        transport: 'vhd',
      });
      const present = bases.filter((base): base is PlanBase => base !== undefined);
      if (present.length !== bases.length) return full('no-base-restore-point');
      const stored = present.map((base) => base.manifest.disks.find((candidate) => candidate.key === key));
      if (stored.some((entry) => entry === undefined)) return full('no-base-restore-point');
      if (present.some((base) => base.damagedDisks === 'all' || base.damagedDisks.has(key)))
        return full('base-damaged');
      const baseDisk = baseSnapshot?.disks.find((candidate) => diskKey(candidate) === key);
      if (baseDisk === undefined)
        return full(restorePointMissing ? 'no-base-restore-point' : 'no-base-snapshot');
      if (
        baseDisk.virtualSize !== disk.virtualSize ||
        stored.some((entry) => entry?.virtualSize !== disk.virtualSize)
      ) {
        return full('disk-resized');
      }
      if (input.fullInterval > 0 && present.some((base) => chainLength(base.manifest) >= input.fullInterval))
        return full('full-interval');
      if (
        input.fullIntervalDays > 0 &&
        present.some((base) => {
          const last = lastFullAt(base.manifest);
          return last !== undefined && now - last.getTime() >= input.fullIntervalDays * DAY_MS;
        })
      ) {
        return full('full-interval-days');
      }
      return { disk, key, mode: 'delta', reason: 'base-available', transport: 'vhd', baseDisk };
    });
}

/** What asking CBT for a delta disk's changed blocks gave. */
export type CbtOutcome =
  | { kind: 'changed'; blocks: readonly number[] }
  /** The base snapshot's disk had no CBT (it was turned on since): the VHD delta is used this once. */
  | { kind: 'not-tracked' }
  /** CBT was on at the base but the log no longer links it to this snapshot (disabled, reset). */
  | { kind: 'reset'; error: string };

/** A delta disk's plan once CBT was asked: read only the changed blocks, or a full after a reset. */
export function applyCbt(plan: DiskPlan, outcome: CbtOutcome): DiskPlan {
  if (plan.mode !== 'delta') return plan;
  switch (outcome.kind) {
    case 'changed':
      return { ...plan, transport: 'cbt', changedBlocks: outcome.blocks };
    case 'not-tracked':
      return plan;
    case 'reset': {
      const { baseDisk: _unused, ...rest } = plan;
      return { ...rest, mode: 'full', reason: 'cbt-reset', transport: 'vhd' };
    }
  }
}

/** Attributes the new restore point records about its place in the chain. */
export function chainAttributes(
  plans: readonly DiskPlan[],
  base: RestorePointManifest | undefined,
  snapshotTakenAt: Date,
): { chainLength: number; lastFullAt: string } {
  const incremental = plans.some((plan) => plan.mode === 'delta');
  if (!incremental || base === undefined)
    return { chainLength: 0, lastFullAt: snapshotTakenAt.toISOString() };
  const since = lastFullAt(base);
  return {
    chainLength: chainLength(base) + 1,
    // Unknown for a chain begun before lastFullAt was recorded: this run starts counting.
    lastFullAt: (since ?? snapshotTakenAt).toISOString(),
  };
}
