import type { SnapshotInfo } from '@haven/xapi';

/** How many of the job's snapshots of a VM stay on the host: at least 1 (the next run's base). */
export function snapshotsToKeep(retention: { snapshotsToKeep?: number } | undefined): number {
  const wanted = retention?.snapshotsToKeep;
  return typeof wanted === 'number' && Number.isInteger(wanted) && wanted >= 1 ? wanted : 1;
}

/**
 * The job's snapshots to remove from the host: all but `keep`, the one to keep first (the newest,
 * which the next run uses as its base) and then the newest others.
 */
export function snapshotsToRemove(
  snapshots: readonly SnapshotInfo[],
  newest: string,
  keep: number,
): SnapshotInfo[] {
  const others = snapshots
    .filter((snapshot) => snapshot.uuid !== newest)
    .sort((a, b) => b.takenAt.getTime() - a.takenAt.getTime() || b.uuid.localeCompare(a.uuid));
  return others.slice(Math.max(0, keep - 1));
}
