import { randomUUID } from 'node:crypto';
import type { INestApplication } from '@nestjs/common';
import type request from 'supertest';
import { DataSource } from 'typeorm';
import { JobResourceProvider } from '@haven/service-core';
import { executeRestoreVm, RESTORE_TASK_KEY } from '@haven/service-transfer';
import { createTenantAdmin } from '@haven/testing';
import { XapiPool, type SrInfo } from '@haven/xapi';
import type { XapiSimulator } from '@haven/xapi-sim';
import { buildCli } from '../../cli/src/haven.cli';
import { type BackupLab, type RunBody, startBackupLab } from './backup-lab.fixture';

const MiB = 1024 * 1024;

describe('restore a restore point as a new VM (a durable run, through the gateway)', () => {
  let lab: BackupLab;
  let app: INestApplication;
  let simulator: XapiSimulator;
  let xapi: XapiPool;
  let baseUrl = '';
  let admin = '';
  let poolId = '';
  let pointId = '';
  let sourceVmUuid = '';
  let sourceDiskCount = 0;
  let hashAtBackup = '';
  let target: SrInfo;
  const api = () => lab.api();
  const auth = (req: request.Test, key?: string) => lab.auth(req, key);
  const runEnd = (runId: string): Promise<RunBody> => lab.waitForRun(runId);

  beforeAll(async () => {
    lab = await startBackupLab({ seed: 'restore-vm', passphrase: 'restore vm passphrase' });
    ({ app, simulator, baseUrl, admin, poolId } = lab);
    xapi = await XapiPool.connect({ url: simulator.url, username: 'root', password: 'pw' });
    sourceVmUuid = lab.vm.uuid;
    sourceDiskCount = lab.vm.disks.length;
    hashAtBackup = (await simulator.diskHash(sourceVmUuid)).sha256;
    expect(await lab.runJob()).toMatchObject({ status: 'success' });
    const points = await auth(api().get(`/api/v1/restore-points?jobId=${lab.jobId}`)).expect(200);
    expect(points.body.items).toHaveLength(1);
    pointId = points.body.items[0].id;
    // The VM changes after the backup: the restore must bring back the backed-up content.
    await simulator.writeRandom(sourceVmUuid, { blocks: 3, seed: 'after-backup' });
    expect((await simulator.diskHash(sourceVmUuid)).sha256).not.toBe(hashAtBackup);
    // A disk SR that is not the pool's default, so the choice is seen to be honoured.
    target = (await xapi.listSrs()).find((sr) => sr.acceptsDisks && !sr.isDefault)!;
    expect(target).toBeDefined();
  }, 120_000);

  afterAll(async () => {
    await xapi.close();
    await lab.close();
  });

  it('restores the restore point as a new VM on the chosen SR, with the content at backup time', async () => {
    const started = await auth(api().post(`/api/v1/restore-points/${pointId}/restore`))
      .send({ poolId, srUuid: target.uuid, name: 'restored web' })
      .expect(202);
    expect(started.body).toMatchObject({ tasks: 1, events: `/api/v1/runs/${started.body.runId}/events` });
    const run = await runEnd(started.body.runId);
    expect(run).toMatchObject({ status: 'success', kind: 'restore' });
    const result = run.tasks[0]?.result as { vmUuid: string; vmName: string; disks: unknown[] };
    expect(result.vmName).toBe('restored web');
    expect(result.vmUuid).not.toBe(sourceVmUuid);

    const restored = await xapi.getVm(result.vmUuid);
    expect(restored.name).toBe('restored web');
    expect(restored.otherConfig['haven:restored-from']).toBe(pointId);
    expect(restored.disks).toHaveLength(sourceDiskCount);
    for (const disk of restored.disks) expect(disk.srUuid).toBe(target.uuid);
    expect((await simulator.diskHash(result.vmUuid)).sha256).toBe(hashAtBackup);
  }, 120_000);

  it('restores from the CLI with --follow, naming the VM after the original by default', async () => {
    const lines: string[] = [];
    await buildCli((text) => lines.push(text), { HAVEN_URL: baseUrl, HAVEN_KEY: admin })
      .exitOverride()
      .parseAsync(['node', 'haven', 'restore-points', 'restore', pointId, '--pool', poolId, '--follow']);
    const runId = /^Run (\S+) started with 1 task\(s\)$/.exec(lines[0] ?? '')?.[1];
    expect(runId).toBeDefined();
    expect(lines.at(-1)).toBe(`Run ${runId}: success`);
    const run = await runEnd(runId!);
    const result = run.tasks[0]?.result as { vmUuid: string; vmName: string };
    const source = await xapi.getVm(sourceVmUuid);
    expect(result.vmName.startsWith(`${source.name} (restored `)).toBe(true);
    const restored = await xapi.getVm(result.vmUuid);
    expect(restored.otherConfig['haven:restored-from']).toBe(pointId);
    // No SR given: the pool's default SR holds the disks.
    const defaultSr = (await xapi.listSrs()).find((sr) => sr.isDefault)!;
    for (const disk of restored.disks) expect(disk.srUuid).toBe(defaultSr.uuid);
    expect((await simulator.diskHash(result.vmUuid)).sha256).toBe(hashAtBackup);
  }, 120_000);

  it('leaves nothing half-restored when a disk cannot be created (SR too small)', async () => {
    const vdisBefore = simulator.pool.store.all('VDI').length;
    const vmsBefore = (await xapi.listVms()).length;
    // The VM is created first; its 24 MiB disk then does not fit (SR_FULL), so the VM must go.
    simulator.setSrSize(target.uuid, 16 * MiB);
    try {
      const started = await auth(api().post(`/api/v1/restore-points/${pointId}/restore`))
        .send({ poolId, srUuid: target.uuid, name: 'doomed' })
        .expect(202);
      const run = await runEnd(started.body.runId);
      expect(run).toMatchObject({ status: 'failure', kind: 'restore' });
      expect(run.tasks[0]?.error).toContain('SR_FULL');
      // A full SR is not retried: the failure is recorded on the first attempt.
      expect(run.tasks[0]?.attempts).toBe(1);
    } finally {
      simulator.setSrSize(target.uuid, 4 * 1024 * 1024 * MiB);
    }
    expect((await xapi.listVms()).some((vm) => vm.name === 'doomed')).toBe(false);
    expect((await xapi.listVms()).length).toBe(vmsBefore);
    expect(simulator.pool.store.all('VDI').length).toBe(vdisBefore);
  }, 90_000);

  it('removes the VM an interrupted attempt left behind before restoring again (redelivery)', async () => {
    const [row] = await app
      .get(DataSource)
      .query<
        { tenant_id: string; remote_id: string; manifest_key: string }[]
      >('SELECT tenant_id, remote_id, manifest_key FROM restore_points WHERE id = $1', [pointId]);
    const taskId = randomUUID();
    // What a worker that died mid-restore leaves: a VM carrying the task's marker, with a disk.
    const leftover = await xapi.createVm({
      name: 'interrupted',
      record: {},
      otherConfig: { [RESTORE_TASK_KEY]: taskId },
    });
    const disk = await xapi.createVdi({
      srUuid: target.uuid,
      name: 'interrupted disk',
      virtualSize: 24 * MiB,
    });
    await xapi.attachVdi(leftover.ref, disk.ref, 0);
    const progress: { bytesDone?: number; bytesTotal?: number }[] = [];
    const result = await executeRestoreVm(
      {
        taskId,
        input: {
          restorePointId: pointId,
          remoteId: row.remote_id,
          manifestKey: row.manifest_key,
          poolId,
          srUuid: target.uuid,
          name: 'second attempt',
        },
      },
      {
        signal: new AbortController().signal,
        reportProgress: (p) => progress.push(p),
        resources: app.get(JobResourceProvider).forTenant(row.tenant_id),
        log: () => undefined,
      },
    );
    const names = (await xapi.listVms()).map((vm) => vm.name);
    expect(names).not.toContain('interrupted');
    expect(names.filter((name) => name === 'second attempt')).toHaveLength(1);
    expect(simulator.pool.store.all('VDI').some((v) => v.record['name_label'] === 'interrupted disk')).toBe(
      false,
    );
    expect((await simulator.diskHash(result.vmUuid)).sha256).toBe(hashAtBackup);
    expect(progress.at(-1)).toEqual({ step: 'done', bytesDone: 24 * MiB, bytesTotal: 24 * MiB });
  }, 60_000);

  it('refuses a bad body (400 naming the fields) and what belongs to another tenant (404)', async () => {
    const bad = await auth(api().post(`/api/v1/restore-points/${pointId}/restore`))
      .send({ poolId: 'not-a-uuid', extra: 1 })
      .expect(400);
    const fields = JSON.stringify(bad.body);
    expect(fields).toContain('poolId');
    expect(fields).toContain('extra');
    await auth(api().post(`/api/v1/restore-points/${pointId}/restore`))
      .send({})
      .expect(400);

    const { key: otherKey } = await createTenantAdmin(baseUrl, admin, 'other');
    const otherPool = await auth(api().post('/api/v1/pools'), otherKey)
      .send({ name: 'theirs', url: simulator.url, username: 'root', password: 'pw' })
      .expect(201);
    // Our restore point onto their pool, and their key on our restore point: neither exists for the caller.
    await auth(api().post(`/api/v1/restore-points/${pointId}/restore`))
      .send({ poolId: otherPool.body.id })
      .expect(404);
    await auth(api().post(`/api/v1/restore-points/${pointId}/restore`), otherKey)
      .send({ poolId: otherPool.body.id })
      .expect(404);
  });
});
