import localRemote from '@haven/remote-local';
import type { RemoteStore } from '@haven/remote-sdk';
import type { ScheduleDefinition, TaskExecution } from '@haven/plugin-sdk';
import { scratchDir } from '@haven/testing';
import {
  ARCHIVE_FORMAT,
  ARCHIVE_FORMAT_VERSION,
  ArchiveSealer,
  ArchiveStore,
  newArchiveId,
  sha256Hex,
  type ArchiveManifest,
} from './archive';
import { applyArchiveRetention, hasRetention } from './archive.retention';

const VM = '0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0';
const DAY = 24 * 3600 * 1000;

function schedule(id: string, retention: ScheduleDefinition['retention']): ScheduleDefinition {
  return { id, name: id, timezone: 'Europe/Paris', retention };
}

const task = {
  taskId: 't',
  runId: 'r',
  tenantId: 'tenant',
  type: 'backup.full.vm',
  subject: 'web',
  input: { vm: VM },
  attempt: 1,
  job: {
    id: 'job-1',
    tenantId: 'tenant',
    name: 'weekly',
    type: 'backup.full',
    selection: {},
    remoteIds: [],
    settings: {},
  },
} satisfies TaskExecution;

describe('retention of full-backup archives', () => {
  let folder: { path: string; cleanup: () => Promise<void> };
  let store: RemoteStore;
  let archives: ArchiveStore;

  beforeEach(async () => {
    folder = await scratchDir('haven-archive-retention-');
    store = await localRemote.create({ path: folder.path }, { name: 'retention' });
    archives = new ArchiveStore(store, ArchiveSealer.withKey(undefined));
  });
  afterEach(async () => {
    await store.close();
    await folder.cleanup();
  });

  /** An archive of one small segment, taken `daysAgo` days ago, for a schedule (or none). */
  async function archive(daysAgo: number, scheduleId?: string, jobId = 'job-1'): Promise<string> {
    const takenAt = new Date(Date.UTC(2026, 10, 20, 12) - daysAgo * DAY);
    const location = { vmUuid: VM, archiveId: newArchiveId(`task-${daysAgo}-${scheduleId}`, takenAt) };
    const data = Buffer.from(`archive taken ${daysAgo} days ago`);
    const segment = await archives.writeSegment(location, 0, data, sha256Hex(data));
    const manifest: ArchiveManifest = {
      format: ARCHIVE_FORMAT,
      version: ARCHIVE_FORMAT_VERSION,
      id: location.archiveId,
      vm: { uuid: VM, name: 'web' },
      job: { id: jobId, name: jobId },
      ...(scheduleId === undefined ? {} : { schedule: { id: scheduleId, name: scheduleId } }),
      takenAt: takenAt.toISOString(),
      createdAt: takenAt.toISOString(),
      compression: 'zstd',
      encrypted: false,
      segmentSize: 1024,
      segments: [segment],
      totalSize: data.length,
      storedSize: segment.storedSize,
    };
    return archives.commit(manifest);
  }

  it('keeps the newest N of the schedule, removing the others whole, and leaves other schedules and jobs alone', async () => {
    const nightly = await Promise.all([4, 3, 2, 1].map((days) => archive(days, 'nightly')));
    const other = await archive(5, 'weekly');
    const byHand = await archive(6);
    const otherJob = await archive(7, 'nightly', 'job-2');
    const outcome = await applyArchiveRetention(
      archives,
      'remote-1',
      task,
      schedule('nightly', { keep: 2 }),
      VM,
    );
    expect(outcome.expired).toEqual([
      { remoteId: 'remote-1', manifestKey: nightly[0] },
      { remoteId: 'remote-1', manifestKey: nightly[1] },
    ]);
    expect(outcome.retained.map((r) => r.manifestKey).sort()).toEqual([nightly[2], nightly[3]].sort());
    const left = (await archives.list({ vmUuid: VM })).map((a) => a.manifestKey).sort();
    expect(left).toEqual([nightly[2], nightly[3], other, byHand, otherJob].sort());
    // Nothing of an expired archive stays, segments included.
    const folders = (await archives.folders(VM)).map((f) => f.archiveId);
    expect(folders).toHaveLength(5);
  });

  it('keeps one archive per day for the GFS daily count, tagging the kept ones', async () => {
    const points = await Promise.all([3.2, 3, 2, 1].map((days) => archive(days, 'gfs')));
    const outcome = await applyArchiveRetention(
      archives,
      'remote-1',
      task,
      schedule('gfs', { gfs: { daily: 2 } }),
      VM,
    );
    // Days 2 and 1 are the two newest days; the older ones go.
    expect(outcome.expired.map((e) => e.manifestKey).sort()).toEqual([points[0], points[1]].sort());
    expect(outcome.retained.find((r) => r.manifestKey === points[3])?.gfsTags).toEqual(['daily']);
  });

  it('applies only when the schedule has a retention policy', () => {
    expect(hasRetention(undefined)).toBe(false);
    expect(hasRetention(schedule('s', {}))).toBe(false);
    expect(hasRetention(schedule('s', { snapshotsToKeep: 2 }))).toBe(false);
    expect(hasRetention(schedule('s', { keep: 1 }))).toBe(true);
  });
});
