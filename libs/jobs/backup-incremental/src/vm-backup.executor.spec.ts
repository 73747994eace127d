import localRemote from '@haven/remote-local';
import type {
  JobDefinition,
  JobResources,
  TaskExecution,
  TaskExecutionContext,
  TaskProgress,
} from '@haven/plugin-sdk';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initRepository, openRepository } from '@haven/repository';
import { scratchDir } from '@haven/testing';
import { XapiPool } from '@haven/xapi';
import { startXapiSimulator, type XapiSimulator } from '@haven/xapi-sim';
import { backupVmIncremental } from './vm-backup.executor';

const MiB = 1024 * 1024;

// The executor called directly, as a worker would, against the simulator and a local remote:
// the failure modes the gateway test does not reach.
describe('backup.incremental.vm executor', () => {
  let sim: XapiSimulator;
  let pool: XapiPool;
  const folders: Record<string, { path: string; cleanup: () => Promise<void> }> = {};
  let vmUuid = '';
  let passphrase = 'right-passphrase';

  beforeAll(async () => {
    for (const name of ['sim', 'remote']) folders[name] = await scratchDir(`haven-bi-exec-${name}-`);
    sim = await startXapiSimulator({
      stateDir: folders['sim'].path,
      vms: 1,
      diskSize: 16 * MiB,
      seed: 'exec',
    });
    pool = await XapiPool.connect({ url: sim.url, username: sim.user, password: sim.password });
    vmUuid = (await pool.listVms())[0].uuid;
  });

  afterAll(async () => {
    await pool.close();
    await sim.close();
    for (const folder of Object.values(folders)) await folder.cleanup();
  });

  const job: JobDefinition = {
    id: 'job-exec',
    tenantId: 'tenant-1',
    name: 'exec',
    type: 'backup.incremental',
    selection: { poolId: 'pool-1', mode: 'explicit', vms: [] },
    remoteIds: ['remote-1'],
    settings: {},
  };

  function task(taskId: string, attempt = 1): TaskExecution {
    return {
      taskId,
      runId: 'run-1',
      tenantId: job.tenantId,
      type: 'backup.incremental.vm',
      subject: 'sim-vm-0',
      input: { vm: vmUuid },
      attempt,
      job: { ...job, selection: { ...job.selection, vms: [vmUuid] } },
    };
  }

  function context(
    signal = new AbortController().signal,
    progress: TaskProgress[] = [],
    remote: { path: string; passphrase?: string } = { path: folders['remote'].path, passphrase },
  ): TaskExecutionContext {
    const resources: JobResources = {
      pool: (id) =>
        Promise.resolve({
          id,
          name: 'sim',
          url: sim.url,
          username: sim.user,
          password: sim.password,
          allowUnauthorized: false,
        }),
      remote: async (id) => ({
        id,
        name: 'local',
        type: 'local',
        store: await localRemote.create({ path: remote.path }, { name: 'local' }),
        ...(remote.passphrase === undefined ? {} : { repositoryPassphrase: remote.passphrase }),
      }),
    };
    return {
      signal,
      reportProgress: (entry) => progress.push(entry),
      log: () => undefined,
      resources,
    };
  }

  async function restorePointIds(): Promise<string[]> {
    const store = await localRemote.create({ path: folders['remote'].path }, { name: 'local' });
    try {
      return await (await openRepository(store, { key: 'right-passphrase' })).listRestorePointIds();
    } finally {
      await store.close();
    }
  }

  const snapshots = () => pool.listSnapshots(vmUuid, { otherConfig: { 'haven:job': job.id } });

  it('a task delivered again after it committed reports the same restore point instead of a new backup', async () => {
    const first = await backupVmIncremental(task('task-1'), context());
    expect(first.disks.map((disk) => [disk.mode, disk.reason])).toEqual([['full', 'no-base-restore-point']]);
    const again = await backupVmIncremental(task('task-1', 2), context());
    expect(again.restorePoints).toEqual(first.restorePoints);
    expect(again.snapshot).toBe(first.snapshot);
    expect(await restorePointIds()).toHaveLength(1);
    expect((await snapshots()).map((s) => s.uuid)).toEqual([first.snapshot]);
    // the next task is incremental from it
    const next = await backupVmIncremental(task('task-2'), context());
    expect(next.disks.map((disk) => [disk.mode, disk.reason, disk.bytes])).toEqual([
      ['delta', 'base-available', 0],
    ]);
    expect((await snapshots()).map((s) => s.uuid)).toEqual([next.snapshot]);
  });

  it('a wrong repository passphrase fails before any snapshot is taken', async () => {
    const before = (await snapshots()).map((s) => s.uuid);
    passphrase = 'wrong-passphrase';
    try {
      await expect(backupVmIncremental(task('task-3'), context())).rejects.toMatchObject({
        code: 'WRONG_KEY',
      });
    } finally {
      passphrase = 'right-passphrase';
    }
    expect((await snapshots()).map((s) => s.uuid)).toEqual(before);
    expect(await pool.readVmMarker(vmUuid, 'backup')).toBeUndefined();
  });

  it('an aborted backup leaves no snapshot of its own, no restore point and no marker', async () => {
    const before = (await snapshots()).map((s) => s.uuid);
    const points = await restorePointIds();
    await sim.writeRandom(vmUuid, { blocks: 6, seed: 'abort' });
    const controller = new AbortController();
    const progress: TaskProgress[] = [];
    const ctx = context(controller.signal, progress);
    const aborting: TaskExecutionContext = {
      ...ctx,
      reportProgress: (entry) => {
        ctx.reportProgress(entry);
        if ((entry.bytesDone ?? 0) > 0) controller.abort(new Error('worker shutting down'));
      },
    };
    await expect(backupVmIncremental(task('task-4'), aborting)).rejects.toThrow();
    expect(progress.length).toBeGreaterThan(0);
    expect((await snapshots()).map((s) => s.uuid)).toEqual(before);
    expect(await restorePointIds()).toEqual(points);
    expect(await pool.readVmMarker(vmUuid, 'backup')).toBeUndefined();
  });

  it("compresses chunks as the job's settings say on a repository another job started", async () => {
    const folder = await scratchDir('haven-bi-exec-mixed-');
    try {
      // A repository started with zstd (the default), as another job's first run leaves it.
      const store = await localRemote.create({ path: folder.path }, { name: 'mixed' });
      await initRepository(store, { compression: { codec: 'zstd', level: 1 } });
      await store.close();
      const plainJob: JobDefinition = { ...job, id: 'job-plain', settings: { compression: 'none' } };
      const result = await backupVmIncremental(
        { ...task('task-plain'), job: { ...plainJob, selection: { ...job.selection, vms: [vmUuid] } } },
        context(undefined, undefined, { path: folder.path }),
      );
      expect(result.restorePoints).toHaveLength(1);
      const chunkFiles = (
        await readdir(join(folder.path, 'chunks'), { recursive: true, withFileTypes: true })
      )
        .filter((entry) => entry.isFile())
        .map((entry) => join(entry.parentPath, entry.name));
      // The seeded disk has repeated and partly zero blocks, which zstd would have compressed.
      expect(chunkFiles.length).toBeGreaterThan(0);
      const codecs = new Set<number>();
      for (const path of chunkFiles) codecs.add((await readFile(path)).readUInt8(5));
      expect([...codecs]).toEqual([0]); // codec id in the object header: 0 is none
      for (const snapshot of await pool.listSnapshots(vmUuid, { otherConfig: { 'haven:job': plainJob.id } }))
        await pool.destroySnapshot(snapshot);
    } finally {
      await folder.cleanup();
    }
  });
});
