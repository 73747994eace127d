import type { SnapshotInfo } from '@haven/xapi';
import { snapshotsToKeep, snapshotsToRemove } from './snapshot.retention';

function snapshot(uuid: string, minute: number): SnapshotInfo {
  return {
    ref: `OpaqueRef:${uuid}`,
    uuid,
    name: uuid,
    snapshotOf: 'vm',
    takenAt: new Date(Date.UTC(2026, 0, 1, 0, minute)),
    otherConfig: {},
    disks: [],
    record: {},
  };
}

describe('snapshot retention on the host', () => {
  it('keeps 1 unless the schedule asks for more; never 0', () => {
    expect(snapshotsToKeep(undefined)).toBe(1);
    expect(snapshotsToKeep({})).toBe(1);
    expect(snapshotsToKeep({ snapshotsToKeep: 0 })).toBe(1);
    expect(snapshotsToKeep({ snapshotsToKeep: 3 })).toBe(3);
  });

  it('keeps the new one and the newest others, removing the oldest', () => {
    const all = [snapshot('a', 1), snapshot('d', 4), snapshot('b', 2), snapshot('c', 3), snapshot('new', 5)];
    expect(snapshotsToRemove(all, 'new', 3).map((s) => s.uuid)).toEqual(['b', 'a']);
    expect(snapshotsToRemove(all, 'new', 1).map((s) => s.uuid)).toEqual(['d', 'c', 'b', 'a']);
    expect(snapshotsToRemove(all, 'new', 10)).toEqual([]);
  });

  it('never removes the one to keep, even when its clock is behind the others', () => {
    const all = [snapshot('late-clock', 0), snapshot('x', 9)];
    expect(snapshotsToRemove(all, 'late-clock', 1).map((s) => s.uuid)).toEqual(['x']);
  });
});
