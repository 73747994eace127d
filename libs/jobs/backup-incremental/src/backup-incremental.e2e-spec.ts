import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { loadConfig } from '@haven/config';
import localRemote from '@haven/remote-local';
import { initRepository, openRepository, type RestorePointManifest } from '@haven/repository';
import { JobResourceProvider } from '@haven/service-core';
import { ScheduleTicker } from '@haven/service-scheduler';
import {
  createTenantAdmin,
  readSystemAdminKey,
  scratchDir,
  SIMULATOR_EVENT_DEBOUNCE_MS,
  simulatorLabAppEnv,
} from '@haven/testing';
import { XapiPool } from '@haven/xapi';
import { startXapiSimulator, type XapiSimulator } from '@haven/xapi-sim';
import { startAllInOne } from '../../../../apps/haven/src/haven.app';

const MiB = 1024 * 1024;
const PASSPHRASE = 'incremental-e2e-passphrase';

type Folder = { path: string; cleanup: () => Promise<void> };

interface TaskView {
  subject: string;
  status: string;
  error: string | null;
  attempts: number;
  progress: { bytesDone?: number; bytesTotal?: number };
  result: {
    restorePoints: { remoteId: string; manifestKey: string; kind: string; storedBytes: number }[];
    disks: { key: string; mode: string; reason: string; bytes: number }[];
  } | null;
}

// The product's main job type driven through the HTTP gateway of the all-in-one app against the
// XAPI simulator: 2 VMs (the first with 2 disks) of 64 MiB, two local remotes (one encrypted).
describe('backup.incremental through the gateway', () => {
  let sim: XapiSimulator;
  let app: INestApplication;
  let baseUrl = '';
  let key = '';
  let tenantId = '';
  const folders: Record<string, Folder> = {};
  const ids: Record<string, string> = {};
  let vms: { uuid: string; name: string; disks: number }[] = [];
  /** Each run, with VM uuid -> disk key -> content hash at the time of its backups. */
  const backups: { hashes: Record<string, Record<string, string>>; tasks: TaskView[] }[] = [];
  const settings = { compression: 'zstd', concurrency: 2 };

  const api = () => request(baseUrl);
  const auth = (req: request.Test) => req.set('authorization', `Bearer ${key}`);

  beforeAll(async () => {
    for (const name of ['sim', 'data', 'plain', 'encrypted'])
      folders[name] = await scratchDir(`haven-bi-${name}-`);
    sim = await startXapiSimulator({
      stateDir: folders['sim'].path,
      vms: 2,
      diskSize: 64 * MiB,
      seed: 'bi-e2e',
    });
    vms = sim
      .listVms()
      .filter((vm) => !vm.isTemplate && !vm.isSnapshot)
      .map((vm) => ({
        uuid: vm.uuid,
        name: vm.name,
        disks: vm.disks.filter((d) => d.virtualSize > 0).length,
      }));
    app = await startAllInOne(
      loadConfig(
        simulatorLabAppEnv(folders['data'].path, ['@haven/remote-local', '@haven/job-backup-incremental']),
      ),
    );
    baseUrl = await app.getUrl();
    ({ key, tenantId } = await createTenantAdmin(
      baseUrl,
      await readSystemAdminKey(folders['data'].path),
      'acme',
    ));
  }, 60_000);

  afterAll(async () => {
    await (app as INestApplication | undefined)?.close();
    await (sim as XapiSimulator | undefined)?.close();
    for (const folder of Object.values(folders)) await folder.cleanup();
  });

  async function recordHashes(): Promise<Record<string, Record<string, string>>> {
    const run: Record<string, Record<string, string>> = {};
    for (const vm of vms) {
      run[vm.uuid] = {};
      for (let position = 0; position < vm.disks; position++)
        run[vm.uuid][String(position)] = (await sim.diskHash(vm.uuid, {}, position)).sha256;
    }
    return run;
  }

  /** Runs the job once, keeping what the disks held when it ran (nothing writes meanwhile). */
  async function backupRun(): Promise<{ status: string; tasks: TaskView[] }> {
    const hashes = await recordHashes();
    const run = await runJob();
    backups.push({ hashes, tasks: run.tasks });
    return run;
  }

  async function committedRestorePoints(): Promise<number> {
    let count = 0;
    for (const name of ['plain', 'encrypted']) {
      const store = await localRemote.create({ path: folders[name].path }, { name });
      try {
        const repository = await openRepository(store, name === 'encrypted' ? { key: PASSPHRASE } : {});
        count += (await repository.listRestorePointIds()).length;
      } finally {
        await store.close();
      }
    }
    return count;
  }

  async function runJob(): Promise<{ status: string; tasks: TaskView[] }> {
    const started = await auth(api().post(`/api/v1/jobs/${ids['job']}/run`)).expect(202);
    for (;;) {
      const run = await auth(api().get(`/api/v1/runs/${started.body.runId}`)).expect(200);
      if (['success', 'partial', 'failure', 'cancelled'].includes(run.body.status)) return run.body;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  async function havenSnapshots(pool: XapiPool, vmUuid: string) {
    return pool.listSnapshots(vmUuid, { otherConfig: { 'haven:job': ids['job'] } });
  }

  it('creates the pool, two remotes (one encrypted) and a job over both VMs', async () => {
    const pool = await auth(api().post('/api/v1/pools'))
      .send({ name: 'sim', url: sim.url, username: sim.user, password: sim.password })
      .expect(201);
    ids['pool'] = pool.body.id;
    // HAVEN_XAPI_EVENT_DEBOUNCE_MS reaches the executors' connections with the pool's access.
    const access = await app.get(JobResourceProvider).forTenant(tenantId).pool(ids['pool']);
    expect(access.eventDebounceMs).toBe(SIMULATOR_EVENT_DEBOUNCE_MS);
    for (const name of ['plain', 'encrypted']) {
      const remote = await auth(api().post('/api/v1/remotes'))
        .send({
          name,
          type: 'local',
          settings: { path: folders[name].path },
          ...(name === 'encrypted' ? { encryption: { passphrase: PASSPHRASE } } : {}),
        })
        .expect(201);
      ids[name] = remote.body.id;
    }
    const bad = await auth(api().post('/api/v1/jobs'))
      .send({
        name: 'bad',
        type: 'backup.incremental',
        selection: { poolId: ids['pool'], mode: 'explicit', vms: vms.map((vm) => vm.uuid) },
        remoteIds: [ids['plain']],
        settings: { compression: 'lz4', fullInterval: -1 },
      })
      .expect(400);
    expect(bad.body.errors.map((e: { field: string }) => e.field).sort()).toEqual([
      'settings.compression',
      'settings.fullInterval',
    ]);
    const job = await auth(api().post('/api/v1/jobs'))
      .send({
        name: 'nightly',
        type: 'backup.incremental',
        selection: { poolId: ids['pool'], mode: 'explicit', vms: vms.map((vm) => vm.uuid) },
        remoteIds: [ids['plain'], ids['encrypted']],
        settings,
      })
      .expect(201);
    ids['job'] = job.body.id;
  });

  it('refuses bad jobs and schedules with 400, naming each field', async () => {
    const fields = (body: { errors?: { field: string }[] }): string[] =>
      (body.errors ?? []).map((error) => error.field).sort();
    const unknown = '0b9ab2f6-2f05-4c3f-9a57-6a0d4cf1e3aa';
    const noVm = await auth(api().post('/api/v1/jobs'))
      .send({
        name: 'nothing to back up',
        type: 'backup.incremental',
        selection: { poolId: unknown, mode: 'explicit', vms: [] },
        remoteIds: [ids['plain'], unknown],
      })
      .expect(400);
    expect(fields(noVm.body)).toEqual(['remoteIds', 'selection.poolId', 'selection.vms']);
    expect(JSON.stringify(noVm.body)).toContain(unknown);
    const schedule = (body: Record<string, unknown>) =>
      auth(api().post('/api/v1/schedules')).send({
        jobId: ids['job'],
        name: 'bad',
        cron: '0 3 * * *',
        timezone: 'Europe/Paris',
        retention: { keep: 7 },
        ...body,
      });
    const badTiming = await schedule({ cron: '61 25 * * *', timezone: 'Mars/Olympus_Mons' }).expect(400);
    expect(fields(badTiming.body)).toEqual(['cron', 'timezone']);
    expect(JSON.stringify(badTiming.body)).toContain('Mars/Olympus_Mons');
    const keepNothing = await schedule({ retention: { keep: 0 } }).expect(400);
    expect(fields(keepNothing.body)).toEqual(['retention.keep']);
    const noBuckets = await schedule({ retention: { gfs: { daily: 0 } } }).expect(400);
    expect(fields(noBuckets.body)).toEqual(['retention.gfs.daily']);
    const strangerJob = await schedule({ jobId: unknown }).expect(400);
    expect(fields(strangerJob.body)).toEqual(['jobId']);
    // Nothing was created by the refusals.
    const listed = await auth(api().get(`/api/v1/schedules?jobId=${ids['job']}`)).expect(200);
    expect(listed.body.items).toEqual([]);
  });

  it('first run: a full backup of every disk to both remotes', async () => {
    const run = await backupRun();
    expect(run.tasks.map((t) => [t.subject, t.status, t.error]).sort()).toEqual(
      vms.map((vm) => [vm.name, 'success', null]).sort(),
    );
    for (const task of run.tasks) {
      expect(task.result!.disks.every((d) => d.mode === 'full' && d.reason === 'no-base-restore-point')).toBe(
        true,
      );
      expect(task.result!.restorePoints.map((p) => [p.remoteId, p.kind]).sort()).toEqual(
        [
          [ids['plain'], 'full'],
          [ids['encrypted'], 'full'],
        ].sort(),
      );
    }
    // progress ends at the sum of the VM's disk sizes
    expect(run.tasks.map((t) => [t.subject, t.progress.bytesDone, t.progress.bytesTotal]).sort()).toEqual(
      vms.map((vm) => [vm.name, vm.disks * 64 * MiB, vm.disks * 64 * MiB]).sort(),
    );
    expect(run.tasks.find((t) => t.subject === vms[0].name)!.result!.disks.map((d) => d.key)).toEqual([
      '0',
      '1',
    ]);
  }, 120_000);

  it('second run after guest writes: incremental, only changed blocks read and uploaded', async () => {
    const [first, second] = vms;
    // Whole blocks on one VM; on the other a few bytes inside a block, which the differencing
    // export sends with a partial sector bitmap (filler in the other sectors): the backup completes
    // that block from the previous restore point (checked when every restore point is read back).
    await sim.writeRandom(first.uuid, { blocks: 3, seed: 'w1' }, 0);
    await sim.writeRandom(second.uuid, { bytes: 1000, offset: 5 * MiB + 300, seed: 'w2' });
    const exportsBefore = sim.exports().at(-1)?.sequence ?? 0;
    const run = await backupRun();
    expect(run.status).toBe('success');
    const secondDisk = sim.listVms().find((vm) => vm.uuid === second.uuid)!.disks[0].uuid;
    expect(
      sim
        .exports(exportsBefore)
        .filter((read) => read.snapshotOf === secondDisk)
        .map((read) => [read.format, read.blocks, read.partialBlocks]),
    ).toEqual([['vhd', 1, 1]]);
    for (const task of run.tasks) {
      const disks = task.result!.disks;
      expect(disks.every((d) => d.mode === 'delta' && d.reason === 'base-available')).toBe(true);
      expect(task.result!.restorePoints.every((p) => p.kind === 'incremental')).toBe(true);
    }
    const byName = (name: string) => run.tasks.find((t) => t.subject === name)!.result!;
    // Read from the pool: 3 blocks on disk 0 of the first VM, none on its disk 1, 1 on the second VM.
    expect(byName(first.name).disks.map((d) => [d.key, d.bytes])).toEqual([
      ['0', 3 * 2 * MiB],
      ['1', 0],
    ]);
    expect(byName(second.name).disks.map((d) => [d.key, d.bytes])).toEqual([['0', 2 * MiB]]);
    // Stored: at most the changed blocks (compressed random data is about their size).
    for (const point of byName(first.name).restorePoints)
      expect(point.storedBytes).toBeLessThanOrEqual(3 * 2 * MiB + 4096 * 3);
    for (const point of byName(second.name).restorePoints)
      expect(point.storedBytes).toBeLessThanOrEqual(2 * MiB + 4096);
  }, 120_000);

  it('keeps exactly one backup snapshot per VM: the base of the next run', async () => {
    const pool = await XapiPool.connect({ url: sim.url, username: sim.user, password: sim.password });
    try {
      for (const vm of vms) {
        const snapshots = await havenSnapshots(pool, vm.uuid);
        expect(snapshots).toHaveLength(1);
        expect(await pool.readVmMarker(vm.uuid, 'backup')).toBeUndefined();
      }
    } finally {
      await pool.close();
    }
  });

  it('refuses a VM whose marker another owner holds, leaving its snapshots as they were', async () => {
    const pool = await XapiPool.connect({ url: sim.url, username: sim.user, password: sim.password });
    const held = vms[1];
    try {
      const before = (await havenSnapshots(pool, held.uuid)).map((s) => s.uuid);
      await pool.acquireVmMarker(held.uuid, 'backup', 'other-install:run-9', 10 * 60_000);
      const run = await backupRun();
      expect(run.status).toBe('partial');
      const failed = run.tasks.find((t) => t.subject === held.name)!;
      expect(failed.status).toBe('failure');
      expect(failed.error).toMatch(/already being backed up by "other-install:run-9"/);
      // A held marker is not retried: another attempt would meet the same owner.
      expect(failed.attempts).toBe(1);
      expect(run.tasks.find((t) => t.subject === vms[0].name)!.status).toBe('success');
      expect((await havenSnapshots(pool, held.uuid)).map((s) => s.uuid)).toEqual(before);
      expect((await pool.readVmMarker(held.uuid, 'backup'))?.owner).toBe('other-install:run-9');
    } finally {
      await pool.releaseVmMarker(held.uuid, 'backup', 'other-install:run-9');
      await pool.close();
    }
  }, 120_000);

  it('retries a broken export inside the task when settings.retries allows it', async () => {
    await auth(api().patch(`/api/v1/jobs/${ids['job']}`))
      .send({ settings: { ...settings, retries: 1 } })
      .expect(200);
    await sim.writeRandom(vms[1].uuid, { blocks: 2, seed: 'w3' });
    sim.setFaults({ exportFailAfterBytes: 1000, exportFailTimes: 1 });
    const run = await backupRun();
    expect(run.tasks.map((t) => [t.subject, t.status, t.attempts]).sort()).toEqual(
      vms.map((vm) => [vm.name, 'success', 1]).sort(),
    );
    expect(sim.setFaults({}).exportFailTimes).toBe(0);
  }, 120_000);

  it('an export that keeps failing fails the VM and leaves no snapshot, restore point or marker behind', async () => {
    await auth(api().patch(`/api/v1/jobs/${ids['job']}`))
      .send({ settings })
      .expect(200);
    const pool = await XapiPool.connect({ url: sim.url, username: sim.user, password: sim.password });
    try {
      const before = await Promise.all(
        vms.map(async (vm) => (await havenSnapshots(pool, vm.uuid)).map((s) => s.uuid)),
      );
      const points = await committedRestorePoints();
      sim.setFaults({ exportFailAfterBytes: 1000, exportFailTimes: null });
      const run = await runJob();
      sim.setFaults({ exportFailAfterBytes: null, exportFailTimes: null });
      expect(run.status).toBe('failure');
      for (const task of run.tasks) {
        expect(task).toMatchObject({ status: 'failure', attempts: 3 });
        expect(task.error).toMatch(/VDI|export/i);
      }
      const after = await Promise.all(
        vms.map(async (vm) => (await havenSnapshots(pool, vm.uuid)).map((s) => s.uuid)),
      );
      expect(after).toEqual(before);
      expect(await committedRestorePoints()).toBe(points);
      for (const vm of vms) expect(await pool.readVmMarker(vm.uuid, 'backup')).toBeUndefined();
    } finally {
      await pool.close();
    }
  }, 120_000);

  it('fails a run whose pool does not answer, naming the pool, and records it as failed, manual or scheduled', async () => {
    const points = await committedRestorePoints();
    const schedule = await auth(api().post('/api/v1/schedules'))
      .send({
        jobId: ids['job'],
        name: 'hourly',
        cron: '0 * * * *',
        timezone: 'UTC',
        retention: { keep: 50 },
      })
      .expect(201);
    type RunRow = { id: string; trigger: string; status: string; error: string | null };
    const runsOf = async (trigger: string): Promise<RunRow[]> => {
      const runs = await auth(api().get(`/api/v1/runs?jobId=${ids['job']}&limit=5`)).expect(200);
      return (runs.body.items as RunRow[]).filter((run) => run.trigger === trigger);
    };
    const scheduledRuns = () => runsOf('schedule');
    sim.setFaults({ unreachable: true });
    let scheduled: RunRow[] = [];
    try {
      // By hand: the caller is told at once (502: the pool, upstream of Haven, did not answer),
      // and the failed run is listed, as a scheduled one is.
      const manual = await auth(api().post(`/api/v1/jobs/${ids['job']}/run`)).expect(502);
      expect(manual.body.detail).toContain('pool "sim" did not answer');
      expect(manual.body.detail).toContain(sim.url);
      expect(manual.body.detail).toMatch(/no answer|unreachable/);
      const latest = (await runsOf('manual')).at(0);
      expect(latest).toMatchObject({ status: 'failure' });
      expect(latest?.error).toContain('pool "sim" did not answer');
      expect(manual.body.detail).toContain(`run ${latest?.id ?? '?'} records it`);
      // On schedule: due now, fired by a tick of the scheduler (this one, or the app's own if it
      // claims the schedule first); the run list shows it failed, and why.
      await app
        .get(DataSource)
        .query(`UPDATE schedules SET next_fire_at = now() - interval '1 minute' WHERE id = $1`, [
          schedule.body.id,
        ]);
      await app.get(ScheduleTicker).tick(new Date());
      // The pool stays silent until the run is listed, whichever ticker started it.
      for (let polls = 0; scheduled.length === 0 && polls < 100; polls++) {
        scheduled = await scheduledRuns();
        if (scheduled.length === 0) await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } finally {
      sim.setFaults({ unreachable: false });
      await auth(api().delete(`/api/v1/schedules/${schedule.body.id as string}`)).expect(204);
    }
    expect(scheduled).toHaveLength(1);
    expect(scheduled[0]).toMatchObject({ status: 'failure' });
    expect(scheduled[0]?.error).toContain(sim.url);
    expect(scheduled[0]?.error).toContain('Planning job "nightly" failed');
    expect(await committedRestorePoints()).toBe(points);
  }, 120_000);

  it('fails a run whose remote is gone, naming it, without recreating its folder or a repository there', async () => {
    const points = await committedRestorePoints();
    const away = `${folders['encrypted'].path}.away`;
    await rename(folders['encrypted'].path, away);
    let run: { status: string; tasks: TaskView[] };
    let recreated: boolean;
    try {
      run = await runJob();
    } finally {
      recreated = existsSync(folders['encrypted'].path);
      if (recreated) await rm(folders['encrypted'].path, { recursive: true, force: true });
      await rename(away, folders['encrypted'].path);
    }
    expect(recreated).toBe(false);
    expect(run.status).toBe('failure');
    for (const task of run.tasks) {
      expect(task.status).toBe('failure');
      expect(task.error).toContain('remote encrypted holds no repository');
      // Its repository id was recorded at the first run.
      expect(task.error).toContain('although it held repository');
    }
    expect(await committedRestorePoints()).toBe(points);
  }, 120_000);

  it('makes full backups when the full interval is reached or a disk was resized, saying why', async () => {
    await auth(api().patch(`/api/v1/jobs/${ids['job']}`))
      .send({ settings: { ...settings, fullInterval: 1 } })
      .expect(200);
    const pool = await XapiPool.connect({ url: sim.url, username: sim.user, password: sim.password });
    try {
      const vm = await pool.getVm(vms[0].uuid);
      // XAPI resizes only disks of halted VMs
      await pool.shutdownVm(vm.ref, { force: true });
      const disk = vm.disks.find((d) => d.position === 1)!;
      // not a whole number of 2 MiB blocks: the last block of the disk is short
      await pool.resizeVdi(disk.vdiRef, 64 * MiB + 512 * 1024);
    } finally {
      await pool.close();
    }
    await sim.writeRandom(vms[0].uuid, { bytes: 4096, offset: 64 * MiB + 4096, seed: 'w4' }, 1);
    const run = await backupRun();
    expect(run.status).toBe('success');
    const reasons = run.tasks
      .flatMap((t) => t.result!.disks.map((d) => [t.subject, d.key, d.mode, d.reason]))
      .sort();
    expect(reasons).toEqual(
      [
        [vms[0].name, '0', 'full', 'full-interval'],
        [vms[0].name, '1', 'full', 'disk-resized'],
        [vms[1].name, '0', 'full', 'full-interval'],
      ].sort(),
    );
    expect(run.tasks.every((t) => t.result!.restorePoints.every((p) => p.kind === 'full'))).toBe(true);
  }, 120_000);

  it('every restore point reads back, raw, as the disk was at its backup; the catalog lists them all', async () => {
    const stores = {
      [ids['plain']]: { folder: folders['plain'].path, key: undefined },
      [ids['encrypted']]: { folder: folders['encrypted'].path, key: PASSPHRASE },
    };
    let checked = 0;
    let committed = 0;
    for (const [runIndex, backup] of backups.entries()) {
      for (const task of backup.tasks.filter((t) => t.status === 'success')) {
        const vm = vms.find((candidate) => candidate.name === task.subject)!;
        for (const point of task.result!.restorePoints) {
          committed++;
          const target = stores[point.remoteId];
          const store = await localRemote.create({ path: target.folder }, { name: 'check' });
          try {
            const repository = await openRepository(
              store,
              target.key !== undefined ? { key: target.key } : {},
            );
            const id = point.manifestKey.split('/')[1];
            const reader = await repository.openRestorePoint(id);
            const manifest: RestorePointManifest = reader.manifest;
            expect(manifest.vm.uuid).toBe(vm.uuid);
            expect(manifest.disks.map((d) => d.key)).toEqual(Object.keys(backup.hashes[vm.uuid]));
            for (const disk of manifest.disks) {
              const hash = createHash('sha256');
              for await (const chunk of reader.disk(disk.key).createReadStream())
                hash.update(chunk as Buffer);
              expect([runIndex, vm.name, point.remoteId, disk.key, hash.digest('hex')]).toEqual([
                runIndex,
                vm.name,
                point.remoteId,
                disk.key,
                backup.hashes[vm.uuid][disk.key],
              ]);
              checked++;
            }
          } finally {
            await store.close();
          }
        }
      }
    }
    // full, incremental, marker run (1 VM), retried export, full interval: 2 remotes each
    expect(committed).toBe((2 + 2 + 1 + 2 + 2) * 2);
    expect(checked).toBe((3 + 3 + 2 + 3 + 3) * 2);
    expect(await committedRestorePoints()).toBe(committed);
    const listed = await auth(api().get(`/api/v1/restore-points?jobId=${ids['job']}&limit=100`)).expect(200);
    expect(listed.body.items).toHaveLength(committed);
  }, 120_000);

  // The last tests: they take the plain remote's restore points out of the catalog.
  describe('a remote remembers the repository it holds', () => {
    const repositoryIdIn = async (folder: string): Promise<string> =>
      (JSON.parse(await readFile(join(folder, 'repository.json'), 'utf8')) as { repositoryId: string })
        .repositoryId;

    /**
     * Another repository in the plain remote's place, which a sync is asked to adopt meanwhile:
     * runs the job there; gives the other repository's id and the sync's answer.
     */
    async function runWithAnotherRepository(): Promise<{
      run: { status: string; tasks: TaskView[] };
      left: string[];
      other: string;
      synced: request.Response;
    }> {
      let other = '';
      let synced: request.Response | undefined;
      const { run, left } = await runWithPlainReplaced(async (folder) => {
        const store = await localRemote.create({ path: folder }, { name: 'another' });
        try {
          other = (await initRepository(store)).id;
        } finally {
          await store.close();
        }
        synced = await auth(api().post(`/api/v1/remotes/${ids['plain']}/sync`));
      });
      if (synced === undefined) throw new Error('the sync was not asked');
      return { run, left, other, synced };
    }

    /** Runs the job with `replacement` (an empty folder, or one given a repository) in the plain remote's place. */
    async function runWithPlainReplaced(
      replacement?: (folder: string) => Promise<void>,
    ): Promise<{ run: { status: string; tasks: TaskView[] }; left: string[] }> {
      const folder = folders['plain'].path;
      const away = `${folder}.away`;
      await rename(folder, away);
      try {
        // What an unmounted share leaves: its empty mount point.
        await mkdir(folder);
        await replacement?.(folder);
        const before = await readdir(folder, { recursive: true });
        const run = await runJob();
        const left = await readdir(folder, { recursive: true });
        expect(left.sort()).toEqual(before.sort());
        return { run, left };
      } finally {
        await rm(folder, { recursive: true, force: true });
        await rename(away, folder);
      }
    }

    it('records the repository id of each remote at its first use', async () => {
      for (const name of ['plain', 'encrypted']) {
        const remote = await auth(api().get(`/api/v1/remotes/${ids[name]}`)).expect(200);
        expect(remote.body.repositoryId).toBe(await repositoryIdIn(folders[name].path));
      }
    });

    it('a remote from before ids were recorded adopts no repository that lacks its newest restore point', async () => {
      const recorded = await repositoryIdIn(folders['plain'].path);
      const dataSource = app.get(DataSource);
      // As the migration left remotes used before it: no id, restore points in the catalog.
      await dataSource.query('UPDATE remotes SET repository_id = NULL WHERE id = $1', [ids['plain']]);
      try {
        const { run, other, synced } = await runWithAnotherRepository();
        // Nor does a sync adopt it.
        expect(synced.status).toBe(409);
        expect(synced.body.detail).toContain(`holds repository ${other}, which does not hold`);
        expect(synced.body.detail).toContain('the newest restore point the catalog lists on this remote');
        expect(run.status).toBe('failure');
        for (const task of run.tasks) {
          expect(task.error).toContain(`remote plain holds repository ${other}, which does not hold`);
          expect(task.error).toContain('the newest restore point the catalog lists on this remote');
        }
        const rows = await dataSource.query<{ repository_id: string | null }[]>(
          'SELECT repository_id FROM remotes WHERE id = $1',
          [ids['plain']],
        );
        expect(rows).toEqual([{ repository_id: null }]);
      } finally {
        await dataSource.query('UPDATE remotes SET repository_id = $2 WHERE id = $1', [
          ids['plain'],
          recorded,
        ]);
      }
    }, 120_000);

    it('fails a run whose remote lost its repository after every restore point on it was pruned, naming it, writing nothing', async () => {
      const recorded = await repositoryIdIn(folders['plain'].path);
      const points = await committedRestorePoints();
      // As retention leaves it once it expired them all: the catalog lists none on the remote.
      await app.get(DataSource).query('DELETE FROM restore_points WHERE remote_id = $1', [ids['plain']]);
      const { run, left } = await runWithPlainReplaced();
      expect(left).toEqual([]);
      expect(run.status).toBe('failure');
      for (const task of run.tasks) {
        expect(task.status).toBe('failure');
        expect(task.error).toContain('remote plain holds no repository');
        expect(task.error).toContain(`it held repository ${recorded}`);
        expect(task.error).toContain("make the remote's storage available again");
      }
      expect(await committedRestorePoints()).toBe(points);
    }, 120_000);

    it('fails a run whose remote now holds another repository (REPOSITORY_REPLACED), writing nothing', async () => {
      const recorded = await repositoryIdIn(folders['plain'].path);
      const points = await committedRestorePoints();
      const { run, left, other, synced } = await runWithAnotherRepository();
      expect(left).toEqual(['repository.json']);
      expect(run.status).toBe('failure');
      for (const task of run.tasks) {
        expect(task.status).toBe('failure');
        expect(task.error).toContain(`remote plain holds repository ${other}, not repository ${recorded}`);
        expect(task.error).toContain('add its storage as a new remote');
      }
      // Nor does a sync adopt it.
      expect(synced.status).toBe(422);
      expect(synced.body.detail).toContain(`holds repository ${other}, not repository ${recorded}`);
      expect(await committedRestorePoints()).toBe(points);
    }, 120_000);

    it('a sync records the id of the repository it read, for a remote that had none recorded', async () => {
      const dataSource = app.get(DataSource);
      // A remote from before ids were recorded.
      await dataSource.query('UPDATE remotes SET repository_id = NULL WHERE id = $1', [ids['plain']]);
      const synced = await auth(api().post(`/api/v1/remotes/${ids['plain']}/sync`)).expect(200);
      const recorded = await repositoryIdIn(folders['plain'].path);
      expect(synced.body).toMatchObject({ remote: 'plain', repositoryId: recorded });
      expect(synced.body.added).toBeGreaterThan(0);
      const remote = await auth(api().get(`/api/v1/remotes/${ids['plain']}`)).expect(200);
      expect(remote.body.repositoryId).toBe(recorded);
    });
  });
});
