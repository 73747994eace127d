import { MANIFEST_FORMAT, type RestorePointManifest } from '@haven/repository';
import type { DiskInfo, SnapshotInfo } from '@haven/xapi';
import { applyCbt, chainAttributes, lastFullAt, planDisks, type PlanBase, type PlanInput } from './disk.plan';

const MiB = 1024 * 1024;
const DAY = 24 * 60 * 60 * 1000;
const T0 = new Date('2026-03-01T00:00:00.000Z');

function disk(position: number, virtualSize = 64 * MiB, cbtEnabled = false): DiskInfo {
  return {
    vbdRef: `vbd-${position}`,
    vdiRef: `vdi-${position}`,
    vdiUuid: `uuid-${position}`,
    name: `disk ${position}`,
    virtualSize,
    physicalUtilisation: virtualSize,
    srUuid: 'sr',
    cbtEnabled,
    position,
    otherConfig: {},
  };
}

function snapshot(uuid: string, disks: DiskInfo[]): SnapshotInfo {
  return {
    ref: `ref-${uuid}`,
    uuid,
    name: uuid,
    snapshotOf: 'vm',
    takenAt: T0,
    otherConfig: {},
    disks,
    record: {},
  };
}

function manifest(
  attributes: Record<string, unknown>,
  disks: { key: string; virtualSize: number }[] = [
    { key: '0', virtualSize: 64 * MiB },
    { key: '1', virtualSize: 64 * MiB },
  ],
): RestorePointManifest {
  return {
    format: MANIFEST_FORMAT,
    version: 1,
    id: '20260301T000000000Z-0123456789ab',
    vm: { uuid: 'vm', name: 'vm' },
    createdAt: T0.toISOString(),
    committedAt: T0.toISOString(),
    disks: disks.map((entry) => ({
      ...entry,
      index: `restore-points/x/disk-${entry.key}.idx`,
      indexDigest: '',
      blockSize: 2 * MiB,
      allocatedBlocks: 0,
      logicalBytes: 0,
      uploadedBytes: 0,
      uploadedChunks: 0,
      reusedChunks: 0,
    })),
    sizes: { logicalBytes: 0, uploadedBytes: 0 },
    writer: { session: 's', host: 'h' },
    attributes,
  };
}

const sound = (attributes: Record<string, unknown> = {}): PlanBase => ({
  manifest: manifest({
    snapshotUuid: 'base',
    chainLength: 0,
    snapshotTakenAt: T0.toISOString(),
    ...attributes,
  }),
  damagedDisks: new Set(),
});

function input(overrides: Partial<PlanInput> = {}): PlanInput {
  return {
    disks: [disk(1), disk(0)],
    bases: [sound(), sound()],
    previous: [snapshot('base', [disk(0), disk(1)])],
    fullInterval: 0,
    fullIntervalDays: 0,
    now: new Date(T0.getTime() + DAY),
    ...overrides,
  };
}

const decisions = (plans: ReturnType<typeof planDisks>) =>
  plans.map((plan) => [plan.key, plan.mode, plan.reason]);

describe('full or delta per disk, and why', () => {
  it('is a delta by VHD export of every disk, in position order, when every remote has a sound base', () => {
    const plans = planDisks(input());
    expect(decisions(plans)).toEqual([
      ['0', 'delta', 'base-available'],
      ['1', 'delta', 'base-available'],
    ]);
    expect(plans.map((plan) => [plan.transport, plan.baseDisk?.vdiRef])).toEqual([
      ['vhd', 'vdi-0'],
      ['vhd', 'vdi-1'],
    ]);
  });

  it('is full with no-base-restore-point when one remote holds none, or not this disk', () => {
    expect(decisions(planDisks(input({ bases: [sound(), undefined] })))[0]).toEqual([
      '0',
      'full',
      'no-base-restore-point',
    ]);
    const oneDisk: PlanBase = {
      manifest: manifest({ snapshotUuid: 'base' }, [{ key: '0', virtualSize: 64 * MiB }]),
      damagedDisks: new Set(),
    };
    expect(decisions(planDisks(input({ bases: [oneDisk, sound()] })))).toEqual([
      ['0', 'delta', 'base-available'],
      ['1', 'full', 'no-base-restore-point'],
    ]);
  });

  it('is full with base-damaged for the damaged disks only, or all of them', () => {
    const damaged: PlanBase = { ...sound(), damagedDisks: new Set(['1']) };
    expect(decisions(planDisks(input({ bases: [sound(), damaged] })))).toEqual([
      ['0', 'delta', 'base-available'],
      ['1', 'full', 'base-damaged'],
    ]);
    const all: PlanBase = { ...sound(), damagedDisks: 'all' };
    expect(decisions(planDisks(input({ bases: [all, sound()] }))).map((d) => d[2])).toEqual([
      'base-damaged',
      'base-damaged',
    ]);
  });

  it('is full with no-base-snapshot when the base snapshot is gone from the host, whether the remotes agree on it or not', () => {
    expect(decisions(planDisks(input({ previous: [] }))).map((d) => d[2])).toEqual([
      'no-base-snapshot',
      'no-base-snapshot',
    ]);
    const other = sound({ snapshotUuid: 'other' });
    expect(decisions(planDisks(input({ bases: [sound(), other], previous: [] }))).map((d) => d[2])).toEqual([
      'no-base-snapshot',
      'no-base-snapshot',
    ]);
  });

  it('is full with no-base-restore-point when the remotes disagree on the base and the host has one of their snapshots (a remote is behind)', () => {
    const behind = sound({ snapshotUuid: 'older' });
    expect(decisions(planDisks(input({ bases: [sound(), behind] }))).map((d) => d[2])).toEqual([
      'no-base-restore-point',
      'no-base-restore-point',
    ]);
    expect(decisions(planDisks(input({ bases: [behind, sound()] }))).map((d) => d[2])).toEqual([
      'no-base-restore-point',
      'no-base-restore-point',
    ]);
  });

  it('is full with no-base-restore-point when the base lost its snapshot but a later one of the job is on the host', () => {
    // The newest restore point was deleted by hand: the one before it is the base, its snapshot
    // long gone, and the deleted one's snapshot still on the host.
    const later = { ...snapshot('later', [disk(0), disk(1)]), takenAt: new Date(T0.getTime() + 60_000) };
    expect(decisions(planDisks(input({ previous: [later] }))).map((d) => d[2])).toEqual([
      'no-base-restore-point',
      'no-base-restore-point',
    ]);
    // Taken in the same second as the base (XAPI's times are to the second): later all the same.
    expect(decisions(planDisks(input({ previous: [snapshot('later', [])] }))).map((d) => d[2])).toEqual([
      'no-base-restore-point',
      'no-base-restore-point',
    ]);
    // Only older snapshots of the job left: the base's own snapshot is what is missing.
    const older = { ...snapshot('older', [disk(0), disk(1)]), takenAt: new Date(T0.getTime() - 60_000) };
    expect(decisions(planDisks(input({ previous: [older] }))).map((d) => d[2])).toEqual([
      'no-base-snapshot',
      'no-base-snapshot',
    ]);
  });

  it('is full with disk-resized when the disk grew since the base', () => {
    expect(decisions(planDisks(input({ disks: [disk(0), disk(1, 66 * MiB)] })))).toEqual([
      ['0', 'delta', 'base-available'],
      ['1', 'full', 'disk-resized'],
    ]);
  });

  it('is full with full-interval once the chain is long enough', () => {
    const long = sound({ chainLength: 3 });
    expect(decisions(planDisks(input({ bases: [long, sound()], fullInterval: 3 })))[0][2]).toBe(
      'full-interval',
    );
    expect(decisions(planDisks(input({ bases: [long, sound()], fullInterval: 4 })))[0][2]).toBe(
      'base-available',
    );
  });

  it('is full with full-interval-days once the last full is old enough', () => {
    const old = sound({ chainLength: 5, lastFullAt: T0.toISOString() });
    const at = (days: number) => new Date(T0.getTime() + days * DAY);
    const reason = (days: number, interval: number) =>
      decisions(planDisks(input({ bases: [old, old], fullIntervalDays: interval, now: at(days) })))[0][2];
    expect(reason(6.9, 7)).toBe('base-available');
    expect(reason(7, 7)).toBe('full-interval-days');
    expect(reason(400, 0)).toBe('base-available');
  });

  it('knows when the last full was taken from lastFullAt, or from a full restore point itself', () => {
    expect(lastFullAt(manifest({ lastFullAt: '2026-01-02T00:00:00.000Z', chainLength: 4 }))).toEqual(
      new Date('2026-01-02T00:00:00.000Z'),
    );
    expect(lastFullAt(manifest({ chainLength: 0, snapshotTakenAt: '2026-01-03T00:00:00.000Z' }))).toEqual(
      new Date('2026-01-03T00:00:00.000Z'),
    );
    expect(lastFullAt(manifest({ chainLength: 2 }))).toBeUndefined();
  });

  it('records the chain: a full starts it, a delta extends it and keeps the last full time', () => {
    const plans = planDisks(input());
    const taken = new Date(T0.getTime() + DAY);
    const base = manifest({ chainLength: 2, lastFullAt: T0.toISOString() });
    expect(chainAttributes(plans, base, taken)).toEqual({ chainLength: 3, lastFullAt: T0.toISOString() });
    const fulls = planDisks(input({ previous: [] }));
    expect(chainAttributes(fulls, base, taken)).toEqual({ chainLength: 0, lastFullAt: taken.toISOString() });
  });

  it('with CBT: reads only the changed blocks, keeps the VHD delta when CBT is new, goes full on a reset', () => {
    const [plan] = planDisks(input());
    expect(applyCbt(plan, { kind: 'changed', blocks: [2, 5] })).toMatchObject({
      mode: 'delta',
      transport: 'cbt',
      changedBlocks: [2, 5],
    });
    expect(applyCbt(plan, { kind: 'not-tracked' })).toBe(plan);
    const reset = applyCbt(plan, { kind: 'reset', error: 'SR_BACKEND_FAILURE_460' });
    expect(reset).toMatchObject({ mode: 'full', reason: 'cbt-reset', transport: 'vhd' });
    expect(reset.baseDisk).toBeUndefined();
    const [full] = planDisks(input({ previous: [] }));
    expect(applyCbt(full, { kind: 'changed', blocks: [1] })).toBe(full);
  });
});
