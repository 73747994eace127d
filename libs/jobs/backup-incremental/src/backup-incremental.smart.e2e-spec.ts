import { createHash } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { loadConfig } from '@haven/config';
import localRemote from '@haven/remote-local';
import { chunkKey, openRepository, type Repository } from '@haven/repository';
import { createTenantAdmin, readSystemAdminKey, scratchDir, simulatorLabAppEnv } from '@haven/testing';
import { XapiPool } from '@haven/xapi';
import { startXapiSimulator, type XapiSimulator } from '@haven/xapi-sim';
import { startAllInOne } from '../../../../apps/haven/src/haven.app';

const MiB = 1024 * 1024;
const DISK = 32 * MiB;

type Folder = { path: string; cleanup: () => Promise<void> };

interface DiskView {
  key: string;
  mode: string;
  reason: string;
  bytes: number;
  transport?: string;
}

interface TaskView {
  subject: string;
  status: string;
  error: string | null;
  progress: { bytesDone?: number; bytesTotal?: number };
  result: {
    restorePoints: { remoteId: string; manifestKey: string; kind: string }[];
    disks: DiskView[];
    snapshot: string;
  } | null;
}

interface RunView {
  id: string;
  status: string;
  tasks: TaskView[];
}

// Smart mode of backup.incremental through the gateway: a VM with two disks backed up in
// parallel to a local remote, while the test removes its base snapshot, damages and deletes chunks
// on the remote, turns CBT on and resets it, and keeps several snapshots by schedule.
describe('backup.incremental smart mode through the gateway', () => {
  let sim: XapiSimulator;
  let app: INestApplication;
  let baseUrl = '';
  let key = '';
  const folders: Record<string, Folder> = {};
  const ids: Record<string, string> = {};
  let vm = { uuid: '', name: '' };
  /** Each backup: the disks' hashes when it ran, and its task. */
  const backups: { hashes: Record<string, string>; task: TaskView }[] = [];
  const settings: Record<string, unknown> = { compression: 'none', concurrency: 2, diskConcurrency: 2 };

  const api = () => request(baseUrl);
  const auth = (req: request.Test) => req.set('authorization', `Bearer ${key}`);

  beforeAll(async () => {
    for (const name of ['sim', 'data', 'remote']) folders[name] = await scratchDir(`haven-smart-${name}-`);
    // The first VM of a multi-VM pool has two disks.
    sim = await startXapiSimulator({
      stateDir: folders['sim'].path,
      vms: 2,
      diskSize: DISK,
      seed: 'smart-e2e',
    });
    const first = sim.listVms().find((candidate) => candidate.name === 'sim-vm-0')!;
    vm = { uuid: first.uuid, name: first.name };
    expect(first.disks.filter((disk) => disk.virtualSize > 0)).toHaveLength(2);
    app = await startAllInOne(
      loadConfig(
        simulatorLabAppEnv(folders['data'].path, ['@haven/remote-local', '@haven/job-backup-incremental']),
      ),
    );
    baseUrl = await app.getUrl();
    ({ key } = await createTenantAdmin(baseUrl, await readSystemAdminKey(folders['data'].path), 'smart'));
    const pool = await auth(api().post('/api/v1/pools'))
      .send({ name: 'sim', url: sim.url, username: sim.user, password: sim.password })
      .expect(201);
    const remote = await auth(api().post('/api/v1/remotes'))
      .send({ name: 'local', type: 'local', settings: { path: folders['remote'].path } })
      .expect(201);
    ids['remote'] = remote.body.id;
    const bad = await auth(api().post('/api/v1/jobs'))
      .send({
        name: 'bad',
        type: 'backup.incremental',
        selection: { poolId: pool.body.id, mode: 'explicit', vms: [vm.uuid] },
        remoteIds: [ids['remote']],
        settings: { diskConcurrency: 0, useCbt: 'yes', verifyBase: 'paranoid', fullIntervalDays: -1 },
      })
      .expect(400);
    expect(bad.body.errors.map((e: { field: string }) => e.field).sort()).toEqual([
      'settings.diskConcurrency',
      'settings.fullIntervalDays',
      'settings.useCbt',
      'settings.verifyBase',
    ]);
    const job = await auth(api().post('/api/v1/jobs'))
      .send({
        name: 'smart',
        type: 'backup.incremental',
        selection: { poolId: pool.body.id, mode: 'explicit', vms: [vm.uuid] },
        remoteIds: [ids['remote']],
        settings,
      })
      .expect(201);
    ids['job'] = job.body.id;
  }, 60_000);

  afterAll(async () => {
    await (app as INestApplication | undefined)?.close();
    await (sim as XapiSimulator | undefined)?.close();
    for (const folder of Object.values(folders)) await folder.cleanup();
  });

  async function withPool<T>(body: (pool: XapiPool) => Promise<T>): Promise<T> {
    const pool = await XapiPool.connect({ url: sim.url, username: sim.user, password: sim.password });
    try {
      return await body(pool);
    } finally {
      await pool.close();
    }
  }

  async function withRepository<T>(body: (repository: Repository) => Promise<T>): Promise<T> {
    const store = await localRemote.create({ path: folders['remote'].path }, { name: 'check' });
    try {
      return await body(await openRepository(store));
    } finally {
      await store.close();
    }
  }

  async function waitForRun(runId: string): Promise<RunView> {
    for (;;) {
      const run = await auth(api().get(`/api/v1/runs/${runId}`)).expect(200);
      if (['success', 'partial', 'failure', 'cancelled'].includes(run.body.status)) return run.body;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  async function setSettings(changes: Record<string, unknown>): Promise<void> {
    Object.assign(settings, changes);
    await auth(api().patch(`/api/v1/jobs/${ids['job']}`))
      .send({ settings })
      .expect(200);
  }

  /** Runs the job once (nothing writes meanwhile) and returns its one task, which must succeed. */
  async function backup(body: Record<string, unknown> = {}): Promise<TaskView & { runId: string }> {
    const hashes: Record<string, string> = {};
    for (const position of [0, 1])
      hashes[String(position)] = (await sim.diskHash(vm.uuid, {}, position)).sha256;
    const started = await auth(api().post(`/api/v1/jobs/${ids['job']}/run`))
      .send(body)
      .expect(202);
    const run = await waitForRun(started.body.runId);
    expect([run.status, run.tasks.map((t) => t.error)]).toEqual(['success', [null]]);
    const task = run.tasks[0];
    backups.push({ hashes, task });
    return { ...task, runId: run.id };
  }

  const decisions = (task: TaskView) => task.result!.disks.map((d) => [d.key, d.mode, d.reason]);

  /** The newest restore point's chunks used by one disk only (so damage stays on that disk). */
  async function chunkOnlyIn(diskKey: string): Promise<string> {
    const manifestKey = backups.at(-1)!.task.result!.restorePoints[0].manifestKey;
    return withRepository(async (repository) => {
      const reader = await repository.openRestorePoint(manifestKey.split('/')[1]);
      const chunks = (key: string) =>
        new Set([...reader.disk(key).index.chunkIds()].map((id) => id.toString('hex')));
      const other = chunks(diskKey === '0' ? '1' : '0');
      const own = [...chunks(diskKey)].filter((hex) => !other.has(hex));
      expect(own.length).toBeGreaterThan(0);
      return own[0];
    });
  }

  async function flipByte(chunk: string): Promise<void> {
    const path = join(folders['remote'].path, chunkKey(chunk));
    const bytes = await readFile(path);
    bytes[bytes.length - 100] = (bytes[bytes.length - 100] ?? 0) ^ 0x10;
    await writeFile(path, bytes);
  }

  async function logsOf(
    runId: string,
    expected: number,
  ): Promise<{ level: string; message: string; fields: Record<string, unknown> }[]> {
    // Log lines are stored in batches beside the run: wait until the expected ones are there.
    for (let attempt = 0; ; attempt++) {
      const logs = await auth(api().get(`/api/v1/runs/${runId}/logs?limit=500`)).expect(200);
      const items = logs.body.items as { level: string; message: string; fields: Record<string, unknown> }[];
      const perDisk = items.filter((line) => typeof line.fields['bytesRead'] === 'number');
      if (perDisk.length >= expected || attempt >= 50) return items;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  it('first run: both disks in full, in parallel, with progress summed over the disks and a log line each', async () => {
    const task = await backup();
    expect(decisions(task)).toEqual([
      ['0', 'full', 'no-base-restore-point'],
      ['1', 'full', 'no-base-restore-point'],
    ]);
    expect([task.progress.bytesDone, task.progress.bytesTotal]).toEqual([2 * DISK, 2 * DISK]);
    const logs = await logsOf(task.runId, 2);
    const perDisk = logs.filter((line) => typeof line.fields['bytesRead'] === 'number');
    expect(
      perDisk
        .map((line) => [line.level, line.fields['disk'], line.fields['mode'], line.fields['reason']])
        .sort(),
    ).toEqual([
      ['info', '0', 'full', 'no-base-restore-point'],
      ['info', '1', 'full', 'no-base-restore-point'],
    ]);
    for (const line of perDisk) {
      expect(line.fields).toMatchObject({
        vm: vm.name,
        bytesRead: expect.any(Number),
        bytesStored: expect.any(Number),
        seconds: expect.any(Number),
        mbPerSecond: expect.any(Number),
      });
      expect(line.message).toMatch(/MiB read, .* MiB stored in .* s \(.* MiB\/s\)/);
    }
  }, 120_000);

  it('an incremental after guest writes reads only the changed blocks', async () => {
    await sim.writeRandom(vm.uuid, { blocks: 2, seed: 's1' }, 0);
    const task = await backup();
    expect(task.result!.disks.map((d) => [d.key, d.mode, d.reason, d.bytes])).toEqual([
      ['0', 'delta', 'base-available', 2 * 2 * MiB],
      ['1', 'delta', 'base-available', 0],
    ]);
  }, 120_000);

  it('a run failing mid-export leaves no snapshot of its own; the next run is a delta against the last good base', async () => {
    const jobSnapshots = async () =>
      (
        await withPool((pool) => pool.listSnapshots(vm.uuid, { otherConfig: { 'haven:job': ids['job'] } }))
      ).map((snapshot) => snapshot.uuid);
    const lastGood = backups.at(-1)!.task.result!.snapshot;
    expect(await jobSnapshots()).toEqual([lastGood]);
    const baseDisks = sim.listVms().find((candidate) => candidate.uuid === lastGood)!.disks;
    // A few bytes inside a block of disk 0: that block travels with a partial sector bitmap.
    await sim.writeRandom(vm.uuid, { bytes: 3000, offset: 9 * MiB + 100, seed: 'after-failure' }, 0);
    const beforeFailure = sim.exports().at(-1)?.sequence ?? 0;
    sim.setFaults({ exportFailAfterBytes: 1000, exportFailTimes: null });
    let failed: RunView;
    try {
      const started = await auth(api().post(`/api/v1/jobs/${ids['job']}/run`)).expect(202);
      failed = await waitForRun(started.body.runId);
    } finally {
      sim.setFaults({ exportFailAfterBytes: null, exportFailTimes: null });
    }
    expect([failed.status, failed.tasks.map((t) => t.status)]).toEqual(['failure', ['failure']]);
    expect(failed.tasks[0].error).toMatch(/VDI_IO_ERROR|export/i);
    // It had snapshotted the VM and started reading: those snapshots and their disks are gone.
    const tried = sim.exports(beforeFailure);
    expect(tried.length).toBeGreaterThan(0);
    expect(tried.every((read) => read.base !== null)).toBe(true);
    expect(await jobSnapshots()).toEqual([lastGood]);
    const leftVdis = new Set<unknown>(sim.pool.store.all('VDI').map((object) => object.record['uuid']));
    expect(tried.filter((read) => leftVdis.has(read.uuid))).toEqual([]);

    const beforeNext = sim.exports().at(-1)?.sequence ?? 0;
    const task = await backup();
    expect(decisions(task)).toEqual([
      ['0', 'delta', 'base-available'],
      ['1', 'delta', 'base-available'],
    ]);
    // Against the last good run's snapshot, each disk read once.
    const reads = sim.exports(beforeNext);
    expect(reads.map((read) => [read.format, read.base]).sort()).toEqual(
      baseDisks.map((disk) => ['vhd', disk.uuid]).sort(),
    );
    expect(reads.map((read) => read.partialBlocks).sort()).toEqual([0, 1]);
    const logs = await logsOf(task.runId, 2);
    expect(
      logs
        .filter((line) => typeof line.fields['bytesRead'] === 'number')
        .map((line) => [line.fields['disk'], line.fields['mode'], line.fields['reason']])
        .sort(),
    ).toEqual([
      ['0', 'delta', 'base-available'],
      ['1', 'delta', 'base-available'],
    ]);
    // Restores as the disks were: checked with every restore point at the end.
  }, 120_000);

  it('base snapshot deleted on the host: full backup with no-base-snapshot, logged as a warning', async () => {
    await withPool(async (pool) => {
      for (const snapshot of await pool.listSnapshots(vm.uuid, { otherConfig: { 'haven:job': ids['job'] } }))
        await pool.destroySnapshot(snapshot);
    });
    const task = await backup();
    expect(decisions(task)).toEqual([
      ['0', 'full', 'no-base-snapshot'],
      ['1', 'full', 'no-base-snapshot'],
    ]);
    const warnings = await auth(api().get(`/api/v1/runs/${task.runId}/logs?level=warn`)).expect(200);
    expect(warnings.body.items.map((line: { fields: { reason?: string } }) => line.fields.reason)).toContain(
      'no-base-snapshot',
    );
  }, 120_000);

  it('a chunk corrupted on the remote (verifyBase full): that disk in full with base-damaged, the chunk rewritten', async () => {
    await setSettings({ verifyBase: 'full' });
    const chunk = await chunkOnlyIn('0');
    await flipByte(chunk);
    expect(
      (await withRepository((repository) => repository.verify({ record: false }))).damagedChunks,
    ).toHaveLength(1);
    const task = await backup();
    expect(decisions(task)).toEqual([
      ['0', 'full', 'base-damaged'],
      ['1', 'delta', 'base-available'],
    ]);
    // The full run uploaded the damaged chunk again: every restore point that uses it is sound now.
    expect((await withRepository((repository) => repository.verify({ record: false }))).ok).toBe(true);
  }, 120_000);

  it('a chunk missing from the remote (verifyBase existence): that disk in full with base-damaged', async () => {
    await setSettings({ verifyBase: 'existence' });
    const chunk = await chunkOnlyIn('1');
    await rm(join(folders['remote'].path, chunkKey(chunk)));
    const task = await backup();
    expect(decisions(task)).toEqual([
      ['0', 'delta', 'base-available'],
      ['1', 'full', 'base-damaged'],
    ]);
    expect((await withRepository((repository) => repository.verify({ record: false }))).ok).toBe(true);
  }, 120_000);

  it('damage a verify of the remote recorded makes the next run full on that disk, even with the cheap check', async () => {
    const chunk = await chunkOnlyIn('0');
    await flipByte(chunk);
    const started = await auth(api().post(`/api/v1/remotes/${ids['remote']}/verify`)).expect(202);
    const verify = await waitForRun(started.body.runId);
    expect(verify.tasks.map((t) => (t.result as { ok?: boolean } | null)?.ok)).toEqual([false]);
    const record = JSON.parse(await readFile(join(folders['remote'].path, 'damage.json'), 'utf8'));
    expect(record.chunks).toContain(chunk);
    const task = await backup();
    expect(decisions(task)).toEqual([
      ['0', 'full', 'base-damaged'],
      ['1', 'delta', 'base-available'],
    ]);
    // A complete verify now finds nothing and clears the record.
    const again = await withRepository((repository) => repository.verify());
    expect(again.ok).toBe(true);
    await expect(readFile(join(folders['remote'].path, 'damage.json'))).rejects.toMatchObject({
      code: 'ENOENT',
    });
  }, 120_000);

  it('CBT: turned on by the first run with useCbt, then deltas read only the blocks CBT reports changed', async () => {
    await setSettings({ useCbt: true });
    const enabling = await backup();
    // The base snapshot predates CBT: this once the delta comes from the VHD export.
    expect(enabling.result!.disks.map((d) => [d.key, d.mode, d.reason, d.transport])).toEqual([
      ['0', 'delta', 'base-available', 'vhd'],
      ['1', 'delta', 'base-available', 'vhd'],
    ]);
    await withPool(async (pool) => {
      expect((await pool.getVm(vm.uuid)).disks.map((disk) => disk.cbtEnabled)).toEqual([true, true]);
    });
    await sim.writeRandom(vm.uuid, { blocks: 3, seed: 's2' }, 0);
    await sim.writeRandom(vm.uuid, { bytes: 1000, offset: 7 * MiB + 5, seed: 's3' }, 1);
    const nbdReads = sim.nbd.status().reads;
    const task = await backup();
    expect(task.result!.disks.map((d) => [d.key, d.mode, d.reason, d.transport, d.bytes])).toEqual([
      ['0', 'delta', 'base-available', 'cbt', 3 * 2 * MiB],
      ['1', 'delta', 'base-available', 'cbt', 2 * MiB],
    ]);
    // Read over NBD as real XAPI serves them (VDI.get_nbd_info): 3 + 1 block reads, logged per disk.
    expect(sim.nbd.status().reads - nbdReads).toBe(4);
    const readPaths = (logs: { fields: Record<string, unknown> }[]) =>
      logs
        .filter((line) => typeof line.fields['bytesRead'] === 'number')
        .map((line) => [line.fields['disk'], line.fields['readPath']])
        .sort();
    expect(readPaths(await logsOf(task.runId, 2))).toEqual([
      ['0', 'nbd'],
      ['1', 'nbd'],
    ]);

    // Without a network with an NBD purpose, the same blocks come through the blocks= fallback.
    sim.setNbdEnabled(false);
    try {
      await sim.writeRandom(vm.uuid, { blocks: 1, seed: 's3-fallback' }, 0);
      const fallback = await backup();
      expect(fallback.result!.disks.map((d) => [d.key, d.transport, d.bytes])).toEqual([
        ['0', 'cbt', 2 * MiB],
        ['1', 'cbt', 0],
      ]);
      const logs = await logsOf(fallback.runId, 2);
      expect(readPaths(logs)).toEqual([
        ['0', 'raw-blocks-export'],
        ['1', 'none'],
      ]);
      expect(logs.some((line) => line.message.includes('the pool offers no NBD'))).toBe(true);
      expect(sim.nbd.status().reads - nbdReads).toBe(4);
    } finally {
      sim.setNbdEnabled(true);
    }
  }, 120_000);

  it('CBT over NBD: a connection cut mid-read is retried within the task (settings.retries)', async () => {
    await setSettings({ retries: 1 });
    await sim.writeRandom(vm.uuid, { blocks: 2, seed: 's3-cut' }, 0);
    // The first NBD connection drops once 2 MiB are served: the second block never comes.
    sim.setFaults({ exportFailAfterBytes: 2 * MiB, exportFailTimes: 1 });
    try {
      const task = await backup();
      expect(task.result!.disks.map((d) => [d.key, d.transport, d.bytes])).toEqual([
        ['0', 'cbt', 2 * 2 * MiB],
        ['1', 'cbt', 0],
      ]);
      expect(sim.setFaults({}).exportFailTimes).toBe(0);
      const logs = await logsOf(task.runId, 2);
      const retried = logs.filter((line) => line.level === 'warn' && line.message.includes('retrying'));
      expect(retried).toHaveLength(1);
      expect(String(retried[0].fields['error'])).toContain('NBD');
    } finally {
      sim.setFaults({ exportFailAfterBytes: null, exportFailTimes: null });
      await setSettings({ retries: 0 });
    }
  }, 120_000);

  it('CBT reset on a disk: that disk in full with cbt-reset, logged as a warning', async () => {
    await withPool(async (pool) => {
      const disk = (await pool.getVm(vm.uuid)).disks.find((candidate) => candidate.position === 0)!;
      await pool.disableCbt(disk.vdiRef);
    });
    await sim.writeRandom(vm.uuid, { blocks: 1, seed: 's4' }, 1);
    const task = await backup();
    expect(task.result!.disks.map((d) => [d.key, d.mode, d.reason, d.transport, d.bytes])).toEqual([
      ['0', 'full', 'cbt-reset', 'vhd', expect.any(Number)],
      ['1', 'delta', 'base-available', 'cbt', 2 * MiB],
    ]);
    const warnings = await auth(api().get(`/api/v1/runs/${task.runId}/logs?level=warn`)).expect(200);
    expect(
      warnings.body.items.filter(
        (line: { fields: { reason?: string; disk?: string } }) => line.fields.reason === 'cbt-reset',
      ).length,
    ).toBeGreaterThan(0);
  }, 120_000);

  it('a schedule keeping 3 snapshots keeps the 3 newest on the host, the newest being the last base', async () => {
    const schedule = await auth(api().post('/api/v1/schedules'))
      .send({
        jobId: ids['job'],
        name: 'keep three',
        cron: '0 3 * * *',
        timezone: 'UTC',
        enabled: false,
        retention: { snapshotsToKeep: 3 },
      })
      .expect(201);
    const snapshots: string[] = [];
    // XAPI's snapshot times are to the second and a run against the simulator may take less: each
    // run gets its own minute on the simulator's clock, after the earlier tests' snapshots.
    const start = Date.now();
    try {
      for (let run = 0; run < 4; run++) {
        sim.setClock(new Date(start + (run + 1) * 60_000));
        await sim.writeRandom(vm.uuid, { blocks: 1, seed: `keep-${run}` }, 0);
        const task = await backup({ scheduleId: schedule.body.id });
        snapshots.push(task.result!.snapshot);
        expect(task.result!.disks.every((d) => d.mode === 'delta' && d.transport === 'cbt')).toBe(true);
      }
    } finally {
      sim.setClock(null);
    }
    const kept = await withPool((pool) =>
      pool.listSnapshots(vm.uuid, { otherConfig: { 'haven:job': ids['job'] } }),
    );
    expect(kept.map((snapshot) => snapshot.uuid).sort()).toEqual(snapshots.slice(1).sort());
  }, 180_000);

  it('the last full older than fullIntervalDays (on the host clock): full-interval-days, then deltas again', async () => {
    await setSettings({ fullIntervalDays: 7 });
    sim.setClock(new Date(Date.now() + 8 * 24 * 3600 * 1000));
    try {
      await sim.writeRandom(vm.uuid, { blocks: 1, seed: 'days' }, 1);
      const aged = await backup();
      expect(decisions(aged)).toEqual([
        ['0', 'full', 'full-interval-days'],
        ['1', 'full', 'full-interval-days'],
      ]);
      const next = await backup();
      expect(decisions(next)).toEqual([
        ['0', 'delta', 'base-available'],
        ['1', 'delta', 'base-available'],
      ]);
    } finally {
      sim.setClock(null);
    }
  }, 120_000);

  it('every restore point reads back, raw, as both disks were at its backup', async () => {
    await withRepository(async (repository) => {
      for (const [index, { hashes, task }] of backups.entries()) {
        const point = task.result!.restorePoints[0];
        const reader = await repository.openRestorePoint(point.manifestKey.split('/')[1]);
        for (const disk of reader.manifest.disks) {
          const hash = createHash('sha256');
          for await (const chunk of reader.disk(disk.key).createReadStream()) hash.update(chunk as Buffer);
          expect([index, disk.key, hash.digest('hex')]).toEqual([index, disk.key, hashes[disk.key]]);
        }
        expect(reader.manifest.disks.map((disk) => disk.key)).toEqual(['0', '1']);
      }
      expect((await repository.verify({ record: false })).ok).toBe(true);
    });
    expect(backups).toHaveLength(18);
  }, 180_000);
});
