import { createHash } from 'node:crypto';
import localRemote from '@haven/remote-local';
import {
  DiskStreamSemaphore,
  type JobDefinition,
  type TaskExecution,
  type TaskExecutionContext,
  type TaskProgress,
} from '@haven/plugin-sdk';
import { openRepository } from '@haven/repository';
import type { RemoteStore } from '@haven/remote-sdk';
import { describeIntegration, scratchDir } from '@haven/testing';
import { XapiPool } from '@haven/xapi';
import { startXapiSimulator, type XapiSimulator } from '@haven/xapi-sim';
import { backupVmIncremental } from './vm-backup.executor';

const MiB = 1024 * 1024;

interface LogLine {
  level: string;
  message: string;
  fields: Record<string, unknown>;
}

// The disks of one VM backed up at once (diskConcurrency) or one after the other, against the
// simulator with its throughput capped so that every export spans several progress reports.
describeIntegration('backup.incremental.vm: disks of a VM in parallel', [], () => {
  let sim: XapiSimulator;
  const folders: Record<string, { path: string; cleanup: () => Promise<void> }> = {};
  let vmUuid = '';
  let runs = 0;

  beforeAll(async () => {
    for (const name of ['sim', 'remote']) folders[name] = await scratchDir(`haven-bi-disks-${name}-`);
    // The first VM of a multi-VM pool has two disks.
    sim = await startXapiSimulator({
      stateDir: folders['sim'].path,
      vms: 2,
      diskSize: 16 * MiB,
      seed: 'disks',
    });
    vmUuid = sim.listVms().find((vm) => vm.name === 'sim-vm-0')!.uuid;
  });

  afterAll(async () => {
    await sim.close();
    for (const folder of Object.values(folders)) await folder.cleanup();
  });

  async function run(
    settings: Record<string, unknown>,
    worker: Partial<TaskExecutionContext> = {},
    /** Failure injection over the real local remote. */
    wrapStore: (store: RemoteStore) => RemoteStore = (store) => store,
  ) {
    const progress: TaskProgress[] = [];
    const logs: LogLine[] = [];
    const job: JobDefinition = {
      id: 'job-disks',
      tenantId: 'tenant-1',
      name: 'disks',
      type: 'backup.incremental',
      selection: { poolId: 'pool-1', mode: 'explicit', vms: [vmUuid] },
      remoteIds: ['remote-1'],
      settings: { compression: 'none', ...settings },
    };
    const taskId = `task-${++runs}`;
    const task: TaskExecution = {
      taskId,
      runId: 'run-1',
      tenantId: job.tenantId,
      type: 'backup.incremental.vm',
      subject: 'sim-vm-0',
      input: { vm: vmUuid },
      attempt: 1,
      job,
    };
    const context: TaskExecutionContext = {
      signal: new AbortController().signal,
      reportProgress: (entry) => progress.push(entry),
      log: (level, message, fields = {}) => logs.push({ level, message, fields }),
      resources: {
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
          store: wrapStore(await localRemote.create({ path: folders['remote'].path }, { name: 'local' })),
        }),
      },
      ...worker,
    };
    const hashes = [(await sim.diskHash(vmUuid, {}, 0)).sha256, (await sim.diskHash(vmUuid, {}, 1)).sha256];
    const outcome = await backupVmIncremental(task, context).then(
      (result) => ({ result, error: undefined }),
      (error: unknown) => ({ result: undefined, error }),
    );
    return { ...outcome, progress, logs, hashes };
  }

  /** Runs `check` with a lister of this job's snapshots of the VM (their uuids), over a pool connection of its own. */
  async function withJobSnapshots(
    check: (snapshots: () => Promise<string[]>) => Promise<void>,
  ): Promise<void> {
    const pool = await XapiPool.connect({ url: sim.url, username: sim.user, password: sim.password });
    try {
      await check(async () =>
        (await pool.listSnapshots(vmUuid, { otherConfig: { 'haven:job': 'job-disks' } })).map((s) => s.uuid),
      );
    } finally {
      await pool.close();
    }
  }

  /** Which disk each progress report was about, in order ("0", "1"). */
  const diskSteps = (progress: TaskProgress[]) =>
    progress.map((entry) => /^disk (\d+)$/.exec(entry.step ?? '')?.[1]).filter((disk) => disk !== undefined);

  async function restoredHashes(manifestKey: string): Promise<string[]> {
    const store = await localRemote.create({ path: folders['remote'].path }, { name: 'check' });
    try {
      const reader = await (await openRepository(store)).openRestorePoint(manifestKey.split('/')[1]);
      const hashes: string[] = [];
      for (const disk of reader.manifest.disks) {
        const hash = createHash('sha256');
        for await (const chunk of reader.disk(disk.key).createReadStream()) hash.update(chunk as Buffer);
        hashes.push(hash.digest('hex'));
      }
      return hashes;
    } finally {
      await store.close();
    }
  }

  it('diskConcurrency 2 reads both disks at once; progress sums them and the restore point is exact', async () => {
    sim.setFaults({ bandwidthBytesPerSecond: 16 * MiB });
    try {
      const { result, error, progress, logs, hashes } = await run({ diskConcurrency: 2 });
      expect(error).toBeUndefined();
      const steps = diskSteps(progress);
      // Reports about disk 1 come before the last one about disk 0: the two were read together.
      expect(steps.indexOf('1')).toBeGreaterThan(-1);
      expect(steps.indexOf('1')).toBeLessThan(steps.lastIndexOf('0'));
      // bytesDone only grows, to the sum of both disks
      const done = progress.map((entry) => entry.bytesDone ?? 0);
      expect(done).toEqual([...done].sort((a, b) => a - b));
      expect(progress.at(-1)).toMatchObject({ bytesDone: 32 * MiB, bytesTotal: 32 * MiB });
      // The phases around the disks are steps of their own, in order.
      const phases = [...new Set(progress.map((entry) => entry.step))].filter(
        (step) => step === undefined || !/^disk /.test(step),
      );
      expect(phases).toEqual(['opening remotes', 'taking snapshot', 'committing', 'committed']);
      expect(await restoredHashes(result!.restorePoints[0].manifestKey)).toEqual(hashes);
      expect(
        logs
          .filter((line) => typeof line.fields['bytesRead'] === 'number')
          .map((line) => line.fields['disk']),
      ).toHaveLength(2);
    } finally {
      sim.setFaults({ bandwidthBytesPerSecond: null });
    }
  }, 60_000);

  it('diskConcurrency 1 reads the disks one after the other', async () => {
    await sim.writeRandom(vmUuid, { blocks: 3, seed: 'serial-0' }, 0);
    await sim.writeRandom(vmUuid, { blocks: 3, seed: 'serial-1' }, 1);
    sim.setFaults({ bandwidthBytesPerSecond: 16 * MiB });
    try {
      const { result, error, progress, hashes } = await run({ diskConcurrency: 1 });
      expect(error).toBeUndefined();
      const steps = diskSteps(progress);
      expect(steps.lastIndexOf('0')).toBeLessThan(steps.indexOf('1'));
      expect(result!.disks.map((disk) => [disk.key, disk.mode])).toEqual([
        ['0', 'delta'],
        ['1', 'delta'],
      ]);
      expect(await restoredHashes(result!.restorePoints[0].manifestKey)).toEqual(hashes);
    } finally {
      sim.setFaults({ bandwidthBytesPerSecond: null });
    }
  }, 60_000);

  it('diskConcurrency 2 on a worker with one disk stream reads the disks one after the other', async () => {
    await sim.writeRandom(vmUuid, { blocks: 3, seed: 'slot-0' }, 0);
    await sim.writeRandom(vmUuid, { blocks: 3, seed: 'slot-1' }, 1);
    sim.setFaults({ bandwidthBytesPerSecond: 16 * MiB });
    const diskStreams = new DiskStreamSemaphore(1);
    try {
      const { result, error, progress, hashes } = await run({ diskConcurrency: 2 }, { diskStreams });
      expect(error).toBeUndefined();
      const steps = diskSteps(progress);
      expect(steps.indexOf('1')).toBeGreaterThan(-1);
      expect(steps.lastIndexOf('0')).toBeLessThan(steps.indexOf('1'));
      expect(diskStreams.inUse).toBe(0);
      expect(await restoredHashes(result!.restorePoints[0].manifestKey)).toEqual(hashes);
    } finally {
      sim.setFaults({ bandwidthBytesPerSecond: null });
    }
  }, 60_000);

  it('a base check that fails while the snapshot is taken fails the backup and removes that snapshot', async () => {
    await withJobSnapshots(async (snapshots) => {
      const before = await snapshots();
      await sim.writeRandom(vmUuid, { blocks: 2, seed: 'check-fails' }, 0);
      // The base's chunks are checked by one missing() call over their keys: the remote fails it.
      const failingChecks = (store: RemoteStore): RemoteStore =>
        Object.create(store, {
          missing: {
            value: (keys: Iterable<string>, options?: { signal?: AbortSignal }) => {
              const asked = [...keys];
              return asked.some((key) => key.startsWith('chunks/'))
                ? Promise.reject(new Error('injected: stat failed'))
                : store.missing(asked, options);
            },
          },
        }) as RemoteStore;
      const { error, progress } = await run({}, {}, failingChecks);
      expect(error).toMatchObject({ message: expect.stringContaining('injected: stat failed') });
      expect(progress.map((entry) => entry.step)).toContain('taking snapshot');
      expect(await snapshots()).toEqual(before);
    });
  }, 60_000);

  it('one disk failing stops the other; one error line names the VM and that disk; nothing is left', async () => {
    await withJobSnapshots(async (snapshots) => {
      const before = await snapshots();
      try {
        await sim.writeRandom(vmUuid, { blocks: 4, seed: 'fail-0' }, 0);
        await sim.writeRandom(vmUuid, { blocks: 4, seed: 'fail-1' }, 1);
        sim.setFaults({
          exportFailAfterBytes: 3 * MiB,
          exportFailTimes: 1,
          bandwidthBytesPerSecond: 16 * MiB,
        });
        const { error, logs } = await run({ diskConcurrency: 2 });
        expect(error).toMatchObject({ name: 'XapiTransferError' });
        const errors = logs.filter((line) => line.level === 'error');
        expect(errors).toHaveLength(1);
        expect(errors[0].fields).toMatchObject({ vm: 'sim-vm-0', disk: expect.stringMatching(/^[01]$/) });
        expect(errors[0].message).toMatch(/backup of disk [01] of VM "sim-vm-0" failed/);
        expect(await snapshots()).toEqual(before);
      } finally {
        sim.setFaults({ exportFailAfterBytes: null, exportFailTimes: null, bandwidthBytesPerSecond: null });
      }
    });
  }, 60_000);
});
