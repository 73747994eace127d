import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import type { INestApplication } from '@nestjs/common';
import type request from 'supertest';
import { DataSource } from 'typeorm';
import type { JobDefinition, TaskExecution, TaskExecutionContext } from '@haven/plugin-sdk';
import { JobResourceProvider } from '@haven/service-core';
import { executeRestoreVm } from '@haven/service-transfer';
import s3Remote from '@haven/remote-s3';
import { startS3rver, type S3rverHandle } from '@haven/testing';
import { XapiPool } from '@haven/xapi';
import type { XapiSimulator } from '@haven/xapi-sim';
import { type BackupLab, type RunBody, startBackupLab } from '../../../../apps/haven/src/backup-lab.fixture';
import { archiveOfKey, newArchiveId, parseArchiveManifestKey, segmentKey } from './archive';
import { backupVmFull } from './vm-archive.executor';

const MiB = 1024 * 1024;
const VAULT_PASSPHRASE = 'full backup vault passphrase';
const S3_PASSPHRASE = 'full backup s3 passphrase';

const settings = (s3: S3rverHandle) => ({
  endpoint: s3.endpoint,
  region: s3.region,
  accessKeyId: s3.accessKeyId,
  secretAccessKey: s3.secretAccessKey,
});
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const runTool = promisify(execFile);
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

interface ArchiveRow {
  id: string;
  remote_id: string;
  manifest_key: string;
  kind: string;
  tenant_id: string;
}

// The backup.full job type through the gateway of the all-in-one app against the XAPI simulator:
// one VM, an encrypted and a plain local remote, a zstd job writing to both (one export fanned out)
// and an uncompressed job writing to the plain one; restores compared byte for byte. Then an
// encrypted S3 remote (s3rver), written and read with several segments in flight.
describe('backup.full through the gateway', () => {
  let lab: BackupLab;
  let app: INestApplication;
  let simulator: XapiSimulator;
  let xapi: XapiPool;
  let s3: S3rverHandle | undefined;
  const folders: Record<string, string> = {};
  const ids: Record<string, string> = {};
  let vmUuid = '';
  let diskCount = 0;
  /** Disk position -> content hash at the time of the zstd job's backup. */
  let hashesAtBackup: string[] = [];
  /** The same at the time of the uncompressed job's backup. */
  let hashesAtRawBackup: string[] = [];
  const api = () => lab.api();
  const auth = (req: request.Test, key?: string) => lab.auth(req, key);

  const hashes = async (uuid: string): Promise<string[]> => {
    const result: string[] = [];
    for (let position = 0; position < diskCount; position++)
      result.push((await simulator.diskHash(uuid, {}, position)).sha256);
    return result;
  };
  const runJob = async (jobId: string, body: Record<string, unknown> = {}): Promise<RunBody> => {
    const started = await auth(api().post(`/api/v1/jobs/${jobId}/run`)).send(body);
    if (started.status !== 202) throw new Error(`run not started: ${JSON.stringify(started.body)}`);
    return lab.waitForRun(started.body.runId as string);
  };
  const archiveRows = async (jobId: string): Promise<ArchiveRow[]> =>
    app
      .get(DataSource)
      .query(
        'SELECT id, remote_id, manifest_key, kind, tenant_id FROM restore_points WHERE job_id = $1 ORDER BY taken_at, remote_id',
        [jobId],
      );
  const restore = async (pointId: string, name: string): Promise<RunBody> => {
    const started = await auth(api().post(`/api/v1/restore-points/${pointId}/restore`))
      .send({ poolId: lab.poolId, name })
      .expect(202);
    return lab.waitForRun(started.body.runId as string);
  };
  /** A GET whose body is collected as bytes, whatever its content type. */
  const download = (path: string) =>
    auth(api().get(path))
      .buffer(true)
      .parse((response, callback) => {
        const parts: Buffer[] = [];
        response.on('data', (part: Buffer) => parts.push(part));
        response.on('end', () => callback(null, Buffer.concat(parts)));
      });
  const jobSnapshots = (jobId: string) => xapi.listSnapshots(vmUuid, { otherConfig: { 'haven:job': jobId } });

  beforeAll(async () => {
    lab = await startBackupLab({
      seed: 'backup-full',
      passphrase: 'lab passphrase unused here',
      diskSize: 32 * MiB,
      plugins: [
        '@haven/remote-local',
        '@haven/remote-s3',
        '@haven/job-backup-incremental',
        '@haven/job-backup-full',
      ],
    });
    ({ app, simulator } = lab);
    xapi = await XapiPool.connect({ url: simulator.url, username: 'root', password: 'pw' });
    vmUuid = lab.vm.uuid;
    diskCount = lab.vm.disks.filter((disk) => disk.virtualSize > 0).length;
    expect(diskCount).toBeGreaterThan(0);
    folders['vault'] = await lab.scratch('haven-full-vault-');
    folders['plain'] = await lab.scratch('haven-full-plain-');
    const vault = await auth(api().post('/api/v1/remotes'))
      .send({
        name: 'vault',
        type: 'local',
        settings: { path: folders['vault'] },
        encryption: { passphrase: VAULT_PASSPHRASE },
      })
      .expect(201);
    const plain = await auth(api().post('/api/v1/remotes'))
      .send({ name: 'plain', type: 'local', settings: { path: folders['plain'] } })
      .expect(201);
    ids['vault'] = vault.body.id;
    ids['plain'] = plain.body.id;
  }, 120_000);

  afterAll(async () => {
    await (xapi as XapiPool | undefined)?.close();
    await (lab as BackupLab | undefined)?.close();
    await s3?.stop();
  });

  it('refuses settings the schema rejects, naming each field', async () => {
    const refused = await auth(api().post('/api/v1/jobs'))
      .send({
        name: 'bad full',
        type: 'backup.full',
        selection: { poolId: lab.poolId, mode: 'explicit', vms: [vmUuid] },
        remoteIds: [ids['plain']],
        settings: { compression: 'lz4', vmConcurrency: 0 },
      })
      .expect(400);
    const text = JSON.stringify(refused.body);
    expect(text).toContain('compression');
    expect(text).toContain('vmConcurrency');
  });

  it('creates the jobs: zstd to both remotes, uncompressed to the plain one', async () => {
    const selection = { poolId: lab.poolId, mode: 'explicit', vms: [vmUuid] };
    const zstd = await auth(api().post('/api/v1/jobs'))
      .send({ name: 'weekly full', type: 'backup.full', selection, remoteIds: [ids['vault'], ids['plain']] })
      .expect(201);
    // Defaults filled by the plugin's schema.
    expect(zstd.body.settings).toMatchObject({ compression: 'zstd', vmConcurrency: 2, retries: 0 });
    const none = await auth(api().post('/api/v1/jobs'))
      .send({
        name: 'raw full',
        type: 'backup.full',
        selection,
        remoteIds: [ids['plain']],
        settings: { compression: 'none' },
      })
      .expect(201);
    ids['zstd'] = zstd.body.id;
    ids['none'] = none.body.id;
  });

  it('backs the VM up as an archive on both remotes, sealed on the encrypted one, and keeps no snapshot', async () => {
    hashesAtBackup = await hashes(vmUuid);
    const run = await runJob(ids['zstd']);
    expect(run).toMatchObject({ status: 'success' });
    const result = run.tasks[0]?.result as {
      restorePoints: { remoteId: string; manifestKey: string; kind: string; logicalBytes: number }[];
      compression: string;
      bytes: number;
    };
    expect(result.compression).toBe('zstd');
    expect(result.restorePoints.map((p) => p.remoteId).sort()).toEqual([ids['vault'], ids['plain']].sort());
    for (const point of result.restorePoints) {
      expect(point.kind).toBe('full');
      expect(parseArchiveManifestKey(point.manifestKey)?.vmUuid).toBe(vmUuid);
      expect(point.logicalBytes).toBe(result.bytes);
    }
    // zstd by the host: far smaller than the disks (the simulator's disks are partly empty).
    expect(result.bytes).toBeLessThan(diskCount * 32 * MiB);

    const rows = await archiveRows(ids['zstd']);
    expect(rows.map((row) => row.kind)).toEqual(['full', 'full']);
    const vaultRow = rows.find((row) => row.remote_id === ids['vault'])!;
    const plainRow = rows.find((row) => row.remote_id === ids['plain'])!;
    const sealed = await readFile(join(folders['vault'], vaultRow.manifest_key));
    expect(sealed.subarray(0, 4).toString()).toBe('HVAM');
    const location = archiveOfKey(vaultRow.manifest_key)!;
    const firstSegment = await readFile(join(folders['vault'], segmentKey(vmUuid, location.archiveId, 0)));
    expect(firstSegment.subarray(0, 4).toString()).toBe('HVAS');
    // The plain remote holds the XVA as exported: zstd frames, and a readable manifest.
    const plainManifest = JSON.parse(await readFile(join(folders['plain'], plainRow.manifest_key), 'utf8'));
    expect(plainManifest).toMatchObject({ compression: 'zstd', encrypted: false, vm: { uuid: vmUuid } });
    const plainLocation = archiveOfKey(plainRow.manifest_key)!;
    const plainSegment = await readFile(
      join(folders['plain'], segmentKey(vmUuid, plainLocation.archiveId, 0)),
    );
    expect(plainSegment.subarray(0, 4).equals(ZSTD_MAGIC)).toBe(true);

    expect(await jobSnapshots(ids['zstd'])).toEqual([]);
    expect((await xapi.getVm(vmUuid)).otherConfig['haven:backup']).toBeUndefined();
  }, 120_000);

  it('restores the encrypted archive as a new VM whose disks equal the source at backup time', async () => {
    await simulator.writeRandom(vmUuid, { blocks: 3, seed: 'after-full-backup' });
    expect(await hashes(vmUuid)).not.toEqual(hashesAtBackup);
    const vaultRow = (await archiveRows(ids['zstd'])).find((row) => row.remote_id === ids['vault'])!;
    const run = await restore(vaultRow.id, 'restored from vault');
    expect(run).toMatchObject({ status: 'success', kind: 'restore' });
    const result = run.tasks[0]?.result as { vmUuid: string; vmName: string; disks: { format: string }[] };
    expect(result.vmName).toBe('restored from vault');
    expect(result.disks).toHaveLength(diskCount);
    expect(result.disks.every((disk) => disk.format === 'xva')).toBe(true);
    const restored = await xapi.getVm(result.vmUuid);
    expect(restored.name).toBe('restored from vault');
    expect(restored.otherConfig['haven:restored-from']).toBe(vaultRow.id);
    // The backed-up VM's marks (backup marker, the job's snapshot tags) do not come along.
    expect(restored.otherConfig['haven:backup']).toBeUndefined();
    expect(restored.otherConfig['haven:job']).toBeUndefined();
    expect(await hashes(result.vmUuid)).toEqual(hashesAtBackup);
  }, 120_000);

  it('backs up uncompressed to the plain remote and restores it byte for byte', async () => {
    const before = await hashes(vmUuid);
    hashesAtRawBackup = before;
    const run = await runJob(ids['none']);
    expect(run).toMatchObject({ status: 'success' });
    const [row] = await archiveRows(ids['none']);
    const location = archiveOfKey(row.manifest_key)!;
    const segment = await readFile(join(folders['plain'], segmentKey(vmUuid, location.archiveId, 0)));
    expect(segment.subarray(0, 4).equals(ZSTD_MAGIC)).toBe(false);
    await simulator.writeRandom(vmUuid, { blocks: 2, seed: 'after-raw-backup' });
    const restored = await restore(row.id, 'restored raw');
    expect(restored).toMatchObject({ status: 'success' });
    const result = restored.tasks[0]?.result as { vmUuid: string };
    expect(await hashes(result.vmUuid)).toEqual(before);
  }, 120_000);

  it('backs up with gzip by the host and restores it byte for byte', async () => {
    const job = await auth(api().post('/api/v1/jobs'))
      .send({
        name: 'gzip full',
        type: 'backup.full',
        selection: { poolId: lab.poolId, mode: 'explicit', vms: [vmUuid] },
        remoteIds: [ids['plain']],
        settings: { compression: 'gzip' },
      })
      .expect(201);
    const before = await hashes(vmUuid);
    const run = await runJob(job.body.id as string);
    expect(run).toMatchObject({ status: 'success' });
    expect((run.tasks[0]?.result as { compression: string }).compression).toBe('gzip');
    const [row] = await archiveRows(job.body.id as string);
    // The plain remote holds the XVA as the host compressed it: a gzip stream, and says so.
    const manifest = JSON.parse(await readFile(join(folders['plain'], row.manifest_key), 'utf8'));
    expect(manifest).toMatchObject({ compression: 'gzip', encrypted: false });
    const location = archiveOfKey(row.manifest_key)!;
    const segment = await readFile(join(folders['plain'], segmentKey(vmUuid, location.archiveId, 0)));
    expect(segment.subarray(0, 2).equals(GZIP_MAGIC)).toBe(true);
    await simulator.writeRandom(vmUuid, { blocks: 2, seed: 'after-gzip-backup' });
    const restored = await restore(row.id, 'restored gzip');
    expect(restored).toMatchObject({ status: 'success' });
    const result = restored.tasks[0]?.result as { vmUuid: string };
    expect(await hashes(result.vmUuid)).toEqual(before);
  }, 120_000);

  it('serves the archive as an XVA download', async () => {
    const [row] = await archiveRows(ids['none']);
    const download = await auth(api().get(`/api/v1/restore-points/${row.id}/archive`))
      .buffer(true)
      .parse((response, callback) => {
        const parts: Buffer[] = [];
        response.on('data', (part: Buffer) => parts.push(part));
        response.on('end', () => callback(null, Buffer.concat(parts)));
      })
      .expect(200);
    const body = download.body as Buffer;
    const manifest = JSON.parse(await readFile(join(folders['plain'], row.manifest_key), 'utf8'));
    expect(body.length).toBe(manifest.totalSize);
    // The plain segments, in order, are the XVA.
    const location = archiveOfKey(row.manifest_key)!;
    const parts: Buffer[] = [];
    for (let index = 0; index < manifest.segments.length; index++)
      parts.push(await readFile(join(folders['plain'], segmentKey(vmUuid, location.archiveId, index))));
    expect(createHash('sha256').update(body).digest('hex')).toBe(
      createHash('sha256').update(Buffer.concat(parts)).digest('hex'),
    );
    // An uncompressed XVA is a tar whose first member is ova.xml.
    expect(body.subarray(0, 7).toString()).toBe('ova.xml');
  }, 60_000);

  it('downloads each disk of an archive (uncompressed, and zstd sealed) as raw, by ranges, and as a VHD qemu-img reads', async () => {
    const scratch = await lab.scratch('haven-full-disks-');
    const noneRow = (await archiveRows(ids['none']))[0];
    const zstdRow = (await archiveRows(ids['zstd'])).find((row) => row.remote_id === ids['vault'])!;
    const disks = lab.vm.disks.filter((disk) => disk.virtualSize > 0);
    for (const [row, expected] of [
      [noneRow, hashesAtRawBackup],
      [zstdRow, hashesAtBackup],
    ] as const) {
      const listed = await auth(api().get(`/api/v1/restore-points/${row.id}/disks`)).expect(200);
      const items = listed.body.items as {
        key: string;
        uuid: string;
        folder: string;
        virtualSize: number;
        download: { raw: string; vhd: string };
      }[];
      // Keyed by VBD position, as incremental restore points key their disks.
      expect(items.map((item) => item.key)).toEqual(disks.map((disk) => disk.userdevice));
      expect(items.every((item) => /^Ref:\d+$/.test(item.folder))).toBe(true);
      for (const [position, item] of items.entries()) {
        const size = disks[position].virtualSize;
        expect(item.virtualSize).toBe(size);
        const raw = await download(item.download.raw).expect(200);
        expect(raw.headers['accept-ranges']).toBe('bytes');
        expect(raw.headers['content-length']).toBe(String(size));
        const disk = raw.body as Buffer;
        expect(sha256(disk)).toBe(expected[position]);

        const from = 3 * MiB - 100;
        const to = 5 * MiB + 99;
        const middle = await download(item.download.raw).set('range', `bytes=${from}-${to}`).expect(206);
        expect(middle.headers['content-range']).toBe(`bytes ${from}-${to}/${size}`);
        expect((middle.body as Buffer).equals(disk.subarray(from, to + 1))).toBe(true);
        const tail = await download(item.download.raw).set('range', 'bytes=-10').expect(206);
        expect((tail.body as Buffer).equals(disk.subarray(size - 10))).toBe(true);
        const refused = await download(item.download.raw).set('range', `bytes=${size}-`).expect(416);
        expect(refused.headers['content-range']).toBe(`bytes */${size}`);

        const vhd = await download(item.download.vhd).expect(200);
        const vhdPath = join(scratch, `${row.id}-${item.key}.vhd`);
        const rawPath = join(scratch, `${row.id}-${item.key}.raw`);
        await writeFile(vhdPath, vhd.body as Buffer);
        await runTool('qemu-img', ['convert', '-f', 'vpc', '-O', 'raw', vhdPath, rawPath]);
        expect(sha256(await readFile(rawPath))).toBe(expected[position]);
        // Only the blocks holding data: smaller than the disk (the simulator's disks are partly empty).
        expect((vhd.body as Buffer).length).toBeLessThan(size);
      }
      const missing = await auth(api().get(`/api/v1/restore-points/${row.id}/disks/9?format=raw`)).expect(
        404,
      );
      expect(JSON.stringify(missing.body)).toContain(`9 of restore point ${row.id}`);
    }
  }, 180_000);

  it('does not take a second backup when a task is redelivered after its commit, and cleans a crashed attempt', async () => {
    const dataSource = app.get(DataSource);
    const [committed] = await archiveRows(ids['none']);
    const [task] = await dataSource.query(
      `SELECT t.id, t.run_id, t.type, t.subject, t.input FROM tasks t JOIN restore_points p ON p.run_id = t.run_id WHERE p.id = $1`,
      [committed.id],
    );
    const job = (await auth(api().get(`/api/v1/jobs/${ids['none']}`)).expect(200)).body;
    const definition: JobDefinition = { ...job, tenantId: committed.tenant_id };
    const context: TaskExecutionContext = {
      signal: new AbortController().signal,
      reportProgress: () => undefined,
      log: () => undefined,
      resources: app.get(JobResourceProvider).forTenant(committed.tenant_id),
    };
    const execution = (taskId: string): TaskExecution => ({
      taskId,
      runId: task.run_id,
      tenantId: committed.tenant_id,
      type: task.type,
      subject: task.subject,
      input: task.input,
      attempt: 2,
      job: definition,
    });
    const folderCount = async (): Promise<number> => {
      const { readdir } = await import('node:fs/promises');
      return (await readdir(join(folders['plain'], 'archives', vmUuid))).length;
    };
    const before = await folderCount();
    const again = await backupVmFull(execution(task.id), context);
    expect(again.restorePoints.map((p) => p.manifestKey)).toEqual([committed.manifest_key]);
    expect(await folderCount()).toBe(before);

    // A worker that died mid-write: a partial folder of its task and the job's snapshot are left.
    const crashedTask = '5b0f3c1e-8d2a-4f6b-9c7e-1a2b3c4d5e6f';
    const partial = newArchiveId(crashedTask);
    const leftover = join(folders['plain'], segmentKey(vmUuid, partial, 0));
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(leftover, '..'), { recursive: true });
    await writeFile(leftover, Buffer.alloc(1024, 7));
    await xapi.snapshotVm(vmUuid, {
      name: 'left by a crash',
      otherConfig: { 'haven:job': ids['none'], 'haven:vm': vmUuid },
    });
    const retried = await backupVmFull(execution(crashedTask), context);
    expect(await jobSnapshots(ids['none'])).toEqual([]);
    const { readdir } = await import('node:fs/promises');
    const names = await readdir(join(folders['plain'], 'archives', vmUuid));
    expect(names).not.toContain(partial);
    expect(names).toHaveLength(before + 1);
    expect(archiveOfKey(retried.restorePoints[0].manifestKey)?.archiveId).not.toBe(partial);
  }, 120_000);

  it('retries an export cut short inside the task when settings.retries allows it', async () => {
    await auth(api().patch(`/api/v1/jobs/${ids['none']}`))
      .send({ settings: { compression: 'none', retries: 1 } })
      .expect(200);
    const before = (await archiveRows(ids['none'])).length;
    simulator.setFaults({ exportFailAfterBytes: 1000, exportFailTimes: 1 });
    try {
      const run = await runJob(ids['none']);
      expect(run.tasks.map((t) => [t.error, t.attempts])).toEqual([[null, 1]]);
      expect(run.status).toBe('success');
    } finally {
      simulator.setFaults({ exportFailAfterBytes: null, exportFailTimes: null });
    }
    expect(await archiveRows(ids['none'])).toHaveLength(before + 1);
    await auth(api().patch(`/api/v1/jobs/${ids['none']}`))
      .send({ settings: { compression: 'none' } })
      .expect(200);
  }, 120_000);

  it('leaves no archive, snapshot or marker behind when the export keeps failing mid-stream', async () => {
    const { readdir } = await import('node:fs/promises');
    const foldersBefore = (await readdir(join(folders['plain'], 'archives', vmUuid))).sort();
    const rowsBefore = (await archiveRows(ids['none'])).length;
    // 24 MiB of random data make the uncompressed XVA longer than a few segments; the export
    // breaks past the first ones, which are stored by then.
    await simulator.writeRandom(vmUuid, { blocks: 12, seed: 'grow the export' });
    simulator.setFaults({ exportFailAfterBytes: 17 * MiB, exportFailTimes: null });
    let run: RunBody;
    try {
      run = await runJob(ids['none']);
    } finally {
      simulator.setFaults({ exportFailAfterBytes: null, exportFailTimes: null });
    }
    expect(run.status).toBe('failure');
    expect(run.tasks[0]?.error).toContain(`export interrupted after ${17 * MiB} bytes`);
    expect((await readdir(join(folders['plain'], 'archives', vmUuid))).sort()).toEqual(foldersBefore);
    expect(await archiveRows(ids['none'])).toHaveLength(rowsBefore);
    expect(await jobSnapshots(ids['none'])).toEqual([]);
    expect(await xapi.readVmMarker(vmUuid, 'backup')).toBeUndefined();
  }, 180_000);

  it("applies the schedule's retention to archives (keep 1)", async () => {
    const schedule = await auth(api().post('/api/v1/schedules'))
      .send({
        jobId: ids['zstd'],
        name: 'nightly full',
        cron: '0 2 * * *',
        timezone: 'UTC',
        retention: { keep: 1 },
      })
      .expect(201);
    // XAPI's snapshot times are to the second and a run against the simulator may take less: each
    // run gets its own minute on the simulator's clock (in the past: later backups stay newer).
    const start = Date.now() - 3 * 60_000;
    simulator.setClock(new Date(start));
    const first = await runJob(ids['zstd'], { scheduleId: schedule.body.id });
    simulator.setClock(new Date(start + 60_000));
    const second = await runJob(ids['zstd'], { scheduleId: schedule.body.id });
    simulator.setClock(null);
    expect([first.status, second.status]).toEqual(['success', 'success']);
    const firstKeys = (
      first.tasks[0]?.result as { restorePoints: { manifestKey: string }[] }
    ).restorePoints.map((p) => p.manifestKey);
    const rows = await archiveRows(ids['zstd']);
    // The unscheduled first backup is not this schedule's; of the scheduled two, only the newest stays.
    expect(rows).toHaveLength(4);
    for (const key of firstKeys) {
      expect(rows.some((row) => row.manifest_key === key)).toBe(false);
      const location = archiveOfKey(key)!;
      const { readdir } = await import('node:fs/promises');
      for (const name of ['vault', 'plain'])
        expect(await readdir(join(folders[name], 'archives', vmUuid))).not.toContain(location.archiveId);
    }
  }, 180_000);

  it('rebuilds the catalog entries of archives from the remotes (remotes sync)', async () => {
    const dataSource = app.get(DataSource);
    const before = await archiveRows(ids['zstd']);
    await dataSource.query('DELETE FROM restore_points WHERE job_id = $1', [ids['zstd']]);
    const synced = await auth(api().post(`/api/v1/remotes/${ids['vault']}/sync`)).expect(200);
    expect(synced.body.added).toBe(before.filter((row) => row.remote_id === ids['vault']).length);
    await auth(api().post(`/api/v1/remotes/${ids['plain']}/sync`)).expect(200);
    const after = await archiveRows(ids['zstd']);
    expect(after.map((row) => [row.remote_id, row.manifest_key, row.kind]).sort()).toEqual(
      before.map((row) => [row.remote_id, row.manifest_key, row.kind]).sort(),
    );
  }, 60_000);

  it('removes the VM an attempt imported but did not mark before it died (redelivered restore)', async () => {
    const row = (await archiveRows(ids['zstd'])).find((r) => r.remote_id === ids['plain'])!;
    const location = archiveOfKey(row.manifest_key)!;
    const manifest = JSON.parse(await readFile(join(folders['plain'], row.manifest_key), 'utf8'));
    // What the dead attempt did: the XVA imported (plain segments in order), nothing marked yet.
    const parts: Buffer[] = [];
    for (let index = 0; index < manifest.segments.length; index++)
      parts.push(await readFile(join(folders['plain'], segmentKey(vmUuid, location.archiveId, index))));
    const xva = Buffer.concat(parts);
    const orphan = await xapi.importVm(Readable.from([xva]), {
      srUuid: (await xapi.listSrs()).find((sr) => sr.isDefault)!.uuid,
      length: xva.length,
    });
    expect(orphan.otherConfig['haven:task']).toBe(manifest.taskId);
    const vmsBefore = (await xapi.listVms()).length;
    const result = await executeRestoreVm(
      {
        taskId: '0c9a2b7e-3f1d-4e8a-b5c6-7d8e9f0a1b2c',
        input: {
          restorePointId: row.id,
          remoteId: row.remote_id,
          manifestKey: row.manifest_key,
          poolId: lab.poolId,
        },
      },
      {
        signal: new AbortController().signal,
        reportProgress: () => undefined,
        log: () => undefined,
        resources: app.get(JobResourceProvider).forTenant(row.tenant_id),
      },
    );
    const vms = await xapi.listVms();
    expect(vms.some((vm) => vm.uuid === orphan.uuid)).toBe(false);
    expect(vms.length).toBe(vmsBefore);
    expect(vms.find((vm) => vm.uuid === result.vmUuid)?.otherConfig['haven:restored-from']).toBe(row.id);
  }, 120_000);

  it('backs up to an encrypted S3 remote with several segments in flight and restores byte for byte', async () => {
    s3 = await startS3rver({ buckets: ['full-backups'] });
    const remote = await auth(api().post('/api/v1/remotes'))
      .send({
        name: 's3 vault',
        type: 's3',
        settings: { ...settings(s3), bucket: 'full-backups', uploadConcurrency: 3 },
        encryption: { passphrase: S3_PASSPHRASE },
      })
      .expect(201);
    const job = await auth(api().post('/api/v1/jobs'))
      .send({
        name: 'raw full to s3',
        type: 'backup.full',
        selection: { poolId: lab.poolId, mode: 'explicit', vms: [vmUuid] },
        remoteIds: [remote.body.id],
        settings: { compression: 'none' },
      })
      .expect(201);
    const before = await hashes(vmUuid);
    const run = await runJob(job.body.id as string);
    expect(run).toMatchObject({ status: 'success' });
    ids['s3'] = job.body.id as string;
    const [row] = await archiveRows(job.body.id as string);
    // Uncompressed, the archive spans several 4 MiB segments (written 3 at a time), sealed.
    const bucket = await s3Remote.create({ ...settings(s3), bucket: 'full-backups' }, { name: 's3-check' });
    try {
      const location = archiveOfKey(row.manifest_key)!;
      const segments: string[] = [];
      for await (const object of bucket.listAll(`archives/${vmUuid}/${location.archiveId}/`))
        if (object.key.includes('/segment-')) segments.push(object.key);
      expect(segments.length).toBeGreaterThan(3);
      const first = await bucket.getBuffer(segmentKey(vmUuid, location.archiveId, 0));
      expect(first.subarray(0, 4).toString()).toBe('HVAS');
    } finally {
      await bucket.close();
    }
    await simulator.writeRandom(vmUuid, { blocks: 2, seed: 'after-s3-backup' });
    const restored = await restore(row.id, 'restored from s3');
    expect(restored).toMatchObject({ status: 'success' });
    const result = restored.tasks[0]?.result as { vmUuid: string };
    expect(await hashes(result.vmUuid)).toEqual(before);
  }, 180_000);

  it('cuts a disk download when the archive turns out damaged mid-stream, never ending it short', async () => {
    const [row] = await archiveRows(ids['s3']);
    const listed = await auth(api().get(`/api/v1/restore-points/${row.id}/disks`)).expect(200);
    const last = (listed.body.items as { key: string; download: { raw: string; vhd: string } }[]).at(-1)!;
    // A flipped byte in the next to last segment: the last disk's data runs to the end of the archive.
    const bucket = await s3Remote.create({ ...settings(s3!), bucket: 'full-backups' }, { name: 's3-damage' });
    const location = archiveOfKey(row.manifest_key)!;
    let segmentCount = 0;
    for await (const object of bucket.listAll(`archives/${vmUuid}/${location.archiveId}/`))
      if (object.key.includes('/segment-')) segmentCount++;
    const damaged = segmentKey(vmUuid, location.archiveId, segmentCount - 2);
    try {
      const bytes = await bucket.getBuffer(damaged);
      bytes[bytes.length - 100] ^= 0x01;
      await bucket.put(damaged, bytes);
    } finally {
      await bucket.close();
    }
    const response = await fetch(`${lab.baseUrl}${last.download.raw}`, {
      headers: { authorization: `Bearer ${lab.admin}` },
    });
    // The headers went out before the damage was reached: the body is cut, the client sees an error.
    expect(response.status).toBe(200);
    await expect(response.arrayBuffer()).rejects.toThrow();
    // A VHD reads the archive once before sending anything: the damage is a 422 naming the segment.
    const refused = await auth(api().get(last.download.vhd)).expect(422);
    expect(refused.body.detail).toContain(damaged);
  }, 120_000);

  it('fails a restore from a damaged segment naming it, leaving no VM behind', async () => {
    const [row] = await archiveRows(ids['none']);
    const location = archiveOfKey(row.manifest_key)!;
    const damaged = segmentKey(vmUuid, location.archiveId, 0);
    const bytes = await readFile(join(folders['plain'], damaged));
    bytes[4096] ^= 0xff;
    await writeFile(join(folders['plain'], damaged), bytes);
    const vmsBefore = (await xapi.listVms()).length;
    const run = await restore(row.id, 'doomed full');
    expect(run).toMatchObject({ status: 'failure', kind: 'restore' });
    expect(run.tasks[0]?.error).toContain(damaged);
    // Damage is not retried.
    expect(run.tasks[0]?.attempts).toBe(1);
    expect((await xapi.listVms()).some((vm) => vm.name === 'doomed full')).toBe(false);
    expect((await xapi.listVms()).length).toBe(vmsBefore);
  }, 120_000);

  it('answers a download of an archive whose sealed manifest was altered with 422 naming it', async () => {
    const row = (await archiveRows(ids['zstd'])).find((r) => r.remote_id === ids['vault'])!;
    const path = join(folders['vault'], row.manifest_key);
    const bytes = await readFile(path);
    bytes[bytes.length - 20] ^= 0x01;
    await writeFile(path, bytes);
    const refused = await auth(api().get(`/api/v1/restore-points/${row.id}/archive`)).expect(422);
    expect(refused.body.detail).toContain(row.manifest_key);
    expect(refused.body.detail).toContain('authentication failed');
  });
  it('a verify of each remote names the archives a damaged segment or an altered manifest breaks, and the catalog marks them', async () => {
    interface VerifyResult {
      ok: boolean;
      archives: number;
      checkedArchiveSegments: number;
      damagedRestorePoints: { manifestKey: string; reasons: string[] }[];
    }
    const verify = async (remote: string): Promise<VerifyResult> => {
      const started = await auth(api().post(`/api/v1/remotes/${ids[remote]}/verify`))
        .send({})
        .expect(202);
      const run = await lab.waitForRun(started.body.runId as string);
      expect([run.kind, run.status]).toEqual(['verify', 'success']);
      return run.tasks[0]?.result as VerifyResult;
    };
    /** Every archive the catalog lists on a remote, whichever job wrote it. */
    const rowsOn = async (remote: string): Promise<ArchiveRow[]> =>
      app.get(DataSource).query(
        `SELECT id, remote_id, manifest_key, kind, tenant_id FROM restore_points
           WHERE remote_id = $1 AND manifest_key LIKE 'archives/%'`,
        [ids[remote]],
      );

    // The plain remote: the uncompressed archive whose first segment an earlier test altered.
    const [damagedRaw] = await archiveRows(ids['none']);
    const plain = await verify('plain');
    const plainRows = await rowsOn('plain');
    expect(plain.ok).toBe(false);
    expect(plain.archives).toBe(plainRows.length);
    expect(plain.damagedRestorePoints.map((point) => point.manifestKey)).toEqual([damagedRaw.manifest_key]);
    expect(plain.damagedRestorePoints[0]?.reasons.join()).toContain(
      segmentKey(vmUuid, archiveOfKey(damagedRaw.manifest_key)!.archiveId, 0),
    );
    const marked = await auth(api().get(`/api/v1/restore-points/${damagedRaw.id}`)).expect(200);
    expect(marked.body.damagedAt).not.toBeNull();
    for (const row of plainRows.filter((r) => r.id !== damagedRaw.id)) {
      const sound = await auth(api().get(`/api/v1/restore-points/${row.id}`)).expect(200);
      expect([row.manifest_key, sound.body.damagedAt]).toEqual([row.manifest_key, null]);
    }

    // The encrypted remote: the archive whose sealed manifest was altered.
    const altered = (await archiveRows(ids['zstd'])).find((row) => row.remote_id === ids['vault'])!;
    const vault = await verify('vault');
    expect(vault.ok).toBe(false);
    expect(vault.damagedRestorePoints.map((point) => point.manifestKey)).toEqual([altered.manifest_key]);
    expect(vault.damagedRestorePoints[0]?.reasons.join()).toContain('authentication failed');
    expect(
      (await auth(api().get(`/api/v1/restore-points/${altered.id}`)).expect(200)).body.damagedAt,
    ).not.toBeNull();
  }, 120_000);
});
