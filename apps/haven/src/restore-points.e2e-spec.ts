import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type request from 'supertest';
import { DataSource } from 'typeorm';
import { RestorePointDeleteLauncher } from '@haven/service-scheduler';
import { createRawStreamFromVhdStream } from '@haven/vhd';
import { buildCli } from '../../cli/src/haven.cli';
import { type BackupLab, startBackupLab } from './backup-lab.fixture';

const MiB = 1024 * 1024;

async function sha256(stream: AsyncIterable<Buffer>): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk);
  return hash.digest('hex');
}

describe('restore points after a backup: disk downloads (raw with ranges, VHD), remote sync and deletion', () => {
  let lab: BackupLab;
  let outDir = '';
  let baseUrl = '';
  let admin = '';
  let pointId = '';
  let remoteId = '';
  let diskKey = '';
  let diskHash = '';
  let raw: Buffer;
  const api = () => lab.api();
  const auth = (req: request.Test) => lab.auth(req);

  /** SHA-256 of a restore point's first disk, downloaded raw. */
  async function rawDiskHash(id: string): Promise<string> {
    const disks = await auth(api().get(`/api/v1/restore-points/${id}/disks`)).expect(200);
    const response = await fetch(
      `${baseUrl}/api/v1/restore-points/${id}/disks/${disks.body.items[0].key}?format=raw`,
      { headers: { authorization: `Bearer ${admin}` } },
    );
    expect(response.status).toBe(200);
    return sha256(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream));
  }

  /** Runs the job now and waits for its end, which must be a success. */
  async function runToEnd(body: Record<string, unknown>): Promise<string> {
    const run = await lab.runJob(body);
    expect(run).toMatchObject({ status: 'success' });
    return run.id;
  }

  beforeAll(async () => {
    lab = await startBackupLab({ seed: 'restore-points', passphrase: 'restore point passphrase' });
    ({ baseUrl, admin, remoteId } = lab);
    outDir = await lab.scratch('haven-rp-out-');
    diskHash = (await lab.simulator.diskHash(lab.vm.uuid)).sha256;
    await runToEnd({});
    const points = await auth(api().get(`/api/v1/restore-points?jobId=${lab.jobId}`)).expect(200);
    expect(points.body.items).toHaveLength(1);
    pointId = points.body.items[0].id;
  }, 120_000);

  afterAll(async () => {
    await lab.close();
  });

  it('lists the disks of a restore point', async () => {
    const disks = await auth(api().get(`/api/v1/restore-points/${pointId}/disks`)).expect(200);
    expect(disks.body.items).toHaveLength(1);
    expect(disks.body.items[0]).toMatchObject({ virtualSize: 24 * MiB });
    diskKey = disks.body.items[0].key;
  });

  it('downloads a disk as raw, equal to the VM disk at backup time', async () => {
    const response = await auth(api().get(`/api/v1/restore-points/${pointId}/disks/${diskKey}?format=raw`))
      .buffer(true)
      .parse((res, done) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => done(null, Buffer.concat(chunks)));
      })
      .expect(200);
    raw = response.body as Buffer;
    expect(response.headers['accept-ranges']).toBe('bytes');
    expect(raw.length).toBe(24 * MiB);
    expect(createHash('sha256').update(raw).digest('hex')).toBe(diskHash);
  });

  it('serves byte ranges of the raw disk, and refuses ranges past its end', async () => {
    const get = (range: string) =>
      auth(api().get(`/api/v1/restore-points/${pointId}/disks/${diskKey}?format=raw`))
        .set('range', range)
        .buffer(true)
        .parse((res, done) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => done(null, Buffer.concat(chunks)));
        });
    const middle = await get(`bytes=${3 * MiB - 100}-${5 * MiB + 99}`).expect(206);
    expect(middle.headers['content-range']).toBe(`bytes ${3 * MiB - 100}-${5 * MiB + 99}/${24 * MiB}`);
    expect(Buffer.compare(middle.body as Buffer, raw.subarray(3 * MiB - 100, 5 * MiB + 100))).toBe(0);
    const tail = await get('bytes=-10').expect(206);
    expect(Buffer.compare(tail.body as Buffer, raw.subarray(raw.length - 10))).toBe(0);
    await get(`bytes=${24 * MiB}-`).expect(416);
  });

  it('downloads a disk as a dynamic VHD holding the same content', async () => {
    const response = await fetch(`${baseUrl}/api/v1/restore-points/${pointId}/disks/${diskKey}?format=vhd`, {
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(response.status).toBe(200);
    const vhd = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream);
    expect(await sha256(createRawStreamFromVhdStream(vhd))).toBe(diskHash);
  });

  it('resumes an interrupted download from the CLI', async () => {
    const file = join(outDir, 'disk.img');
    writeFileSync(file, raw.subarray(0, 5 * MiB + 123));
    const lines: string[] = [];
    const cli = buildCli((text) => lines.push(text), { HAVEN_URL: baseUrl, HAVEN_KEY: admin }).exitOverride();
    await cli.parseAsync([
      'node',
      'haven',
      'restore-points',
      'download',
      pointId,
      '--disk',
      diskKey,
      '-o',
      file,
    ]);
    expect(lines.pop()).toBe(`Wrote ${24 * MiB} bytes to ${file}`);
    expect(await sha256(createReadStream(file))).toBe(diskHash);
  });

  it('rebuilds the catalog from the remote alone (haven remotes sync)', async () => {
    await lab.app.get(DataSource).query('DELETE FROM restore_points');
    expect((await auth(api().get('/api/v1/restore-points')).expect(200)).body.items).toEqual([]);
    const lines: string[] = [];
    const cli = () =>
      buildCli((text) => lines.push(text), { HAVEN_URL: baseUrl, HAVEN_KEY: admin }).exitOverride();
    await cli().parseAsync(['node', 'haven', 'remotes', 'sync', remoteId]);
    expect(lines.pop()).toBe('Remote nas: 1 restore point(s) found, 1 added to the catalog');
    await cli().parseAsync(['node', 'haven', 'remotes', 'sync', remoteId]);
    expect(lines.pop()).toBe('Remote nas: 1 restore point(s) found, 0 added to the catalog');
    const points = await auth(api().get('/api/v1/restore-points')).expect(200);
    expect(points.body.items).toHaveLength(1);
    pointId = points.body.items[0].id;
    // The rebuilt entry serves the same disk.
    const disks = await auth(api().get(`/api/v1/restore-points/${pointId}/disks`)).expect(200);
    expect(disks.body.items[0].key).toBe(diskKey);
  });

  it("applies the schedule's retention after each backup, on the remote and in the catalog", async () => {
    const schedule = await auth(api().post('/api/v1/schedules'))
      .send({
        jobId: lab.jobId,
        name: 'hourly',
        cron: '0 * * * *',
        timezone: 'Europe/Paris',
        retention: { keep: 2 },
      })
      .expect(201);
    await auth(api().post(`/api/v1/jobs/${lab.jobId}/run`))
      .send({ scheduleId: '00000000-0000-4000-8000-000000000000' })
      .expect(400);
    const runs: string[] = [];
    // XAPI's snapshot times are to the second, and quick snapshots share one: the simulator's clock
    // stands still a minute ahead, so all three runs record the same second. Retention and the
    // listing must still tell the newest by when each was committed.
    const second = new Date(Math.ceil(Date.now() / 1000) * 1000 + 60_000);
    lab.simulator.setClock(second, { frozen: true });
    try {
      for (let i = 0; i < 3; i++) runs.push(await runToEnd({ scheduleId: schedule.body.id }));
    } finally {
      lab.simulator.setClock(null);
    }
    const points = await auth(api().get(`/api/v1/restore-points?jobId=${lab.jobId}`)).expect(200);
    // The unscheduled first backup is not this schedule's to expire; of the three scheduled ones,
    // the two committed last stay. Newest first: the last run's, the second's, then the unscheduled
    // one (its catalog entry was rebuilt by the sync above, which knows no run).
    const items = points.body.items as { id: string; runId: string; takenAt: string; committedAt: string }[];
    expect(items.map((p) => p.runId)).toEqual([runs[2], runs[1], null]);
    expect(items.slice(0, 2).map((p) => p.takenAt)).toEqual([second.toISOString(), second.toISOString()]);
    // Page by page, the cursor keeps that order.
    const paged: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await auth(
        api().get(`/api/v1/restore-points?jobId=${lab.jobId}&limit=1${cursor ? `&cursor=${cursor}` : ''}`),
      ).expect(200);
      paged.push(...(page.body.items as { id: string }[]).map((p) => p.id));
      cursor = page.body.nextCursor;
    } while (cursor !== undefined);
    expect(paged).toEqual(items.map((p) => p.id));
    // A cursor of another listing is refused.
    const runsPage = await auth(api().get('/api/v1/runs?limit=1')).expect(200);
    const refused = await auth(api().get(`/api/v1/restore-points?cursor=${runsPage.body.nextCursor}`)).expect(
      400,
    );
    expect(JSON.stringify(refused.body)).toContain('is not a cursor returned by this API');
    // The remote agrees: a sync finds exactly those three.
    const lines: string[] = [];
    await buildCli((text) => lines.push(text), { HAVEN_URL: baseUrl, HAVEN_KEY: admin })
      .exitOverride()
      .parseAsync(['node', 'haven', 'remotes', 'sync', remoteId]);
    expect(lines.pop()).toBe('Remote nas: 3 restore point(s) found, 0 added to the catalog');
  }, 120_000);

  it('deletes one restore point by hand: from the remote and the catalog, then collects garbage; the others still read back the same', async () => {
    const points = await auth(api().get(`/api/v1/restore-points?jobId=${lab.jobId}`)).expect(200);
    const ids = (points.body.items as { id: string }[]).map((p) => p.id);
    expect(ids).toHaveLength(3);
    const [doomed = '', ...kept] = ids;
    const rows: { manifest_key: string }[] = await lab.app
      .get(DataSource)
      .query('SELECT manifest_key FROM restore_points WHERE id = $1', [doomed]);
    const manifestKey = rows[0]?.manifest_key ?? '';
    const remote = await auth(api().get(`/api/v1/remotes/${remoteId}`)).expect(200);
    const manifestFile = join(remote.body.settings.path as string, manifestKey);
    expect(existsSync(manifestFile)).toBe(true);
    const keptHashes = await Promise.all(kept.map(rawDiskHash));

    // While a restore reads the restore point, its deletion is refused, naming that run. (A run row
    // alone stands for the restore: its task is never queued, so no worker picks it up.)
    const db = lab.app.get(DataSource);
    const restoreRunId = randomUUID();
    await db.query(
      `INSERT INTO runs (id, tenant_id, job_id, kind, trigger, status, progress, started_at)
       SELECT $1, tenant_id, NULL, 'restore', 'manual', 'running', '{}', now() FROM restore_points WHERE id = $2`,
      [restoreRunId, doomed],
    );
    await db.query(
      `INSERT INTO tasks (id, tenant_id, run_id, type, subject, input, status, queued_at)
       SELECT $1, tenant_id, $2, 'restore.vm', 'restore', $3, 'running', now() FROM runs WHERE id = $2`,
      [randomUUID(), restoreRunId, JSON.stringify({ restorePointId: doomed })],
    );
    const refused = await auth(api().delete(`/api/v1/restore-points/${doomed}`)).expect(409);
    expect(refused.body.detail).toBe(
      `Restore point ${doomed} is being restored by run ${restoreRunId}; delete it once that run has ended`,
    );
    await db.query('DELETE FROM runs WHERE id = $1', [restoreRunId]);

    // Two deletions started at once (as two scheduler instances would, past the bus): the check and
    // the start are one transaction under the restore point's row lock, so exactly one starts and
    // the other names it.
    const launcher = lab.app.get(RestorePointDeleteLauncher);
    const tenants: { tenant_id: string }[] = await db.query(
      'SELECT tenant_id FROM restore_points WHERE id = $1',
      [doomed],
    );
    const asked = { tenantId: tenants[0]?.tenant_id ?? '', restorePointId: doomed };
    const both = await Promise.allSettled([launcher.start(asked), launcher.start(asked)]);
    const startedRuns = both.flatMap((result) => (result.status === 'fulfilled' ? [result.value.runId] : []));
    const refusals = both.flatMap((result) => (result.status === 'rejected' ? [result.reason as Error] : []));
    expect([startedRuns.length, refusals.length]).toEqual([1, 1]);
    const deletionRunId = startedRuns[0] ?? '';
    expect(refusals[0]).toMatchObject({
      code: 'RESTORE_POINT_IN_USE',
      message: `Restore point ${doomed} is already being deleted by run ${deletionRunId}`,
    });
    // Through the gateway too.
    const second = await auth(api().delete(`/api/v1/restore-points/${doomed}`)).expect(409);
    expect(second.body.detail).toBe(
      `Restore point ${doomed} is already being deleted by run ${deletionRunId}`,
    );
    // While it is being deleted, it cannot be restored (the restore would lose its data mid-way).
    const restoreRefused = await auth(api().post(`/api/v1/restore-points/${doomed}/restore`))
      .send({ poolId: lab.poolId })
      .expect(409);
    expect(restoreRefused.body.detail).toBe(
      `Restore point ${doomed} is being deleted by run ${deletionRunId}; it cannot be restored`,
    );
    const run = await lab.waitForRun(deletionRunId);
    expect(run).toMatchObject({ status: 'success', kind: 'delete-restore-point' });
    expect(run.tasks[0]?.result).toMatchObject({ expiredRestorePoints: [{ remoteId, manifestKey }] });

    const after = await auth(api().get(`/api/v1/restore-points?jobId=${lab.jobId}`)).expect(200);
    expect((after.body.items as { id: string }[]).map((p) => p.id).sort()).toEqual([...kept].sort());
    await auth(api().get(`/api/v1/restore-points/${doomed}`)).expect(404);
    expect(existsSync(manifestFile)).toBe(false);

    // As after retention, the catalog starts a gc run of the remote (its safety window spares young chunks).
    const note = `run ${run.id} deleted a restore point`;
    let gcRunId: string | undefined;
    for (let i = 0; i < 100 && gcRunId === undefined; i++) {
      const runs = await auth(api().get('/api/v1/runs?limit=100')).expect(200);
      gcRunId = (runs.body.items as { id: string; kind: string; progress: { note?: string } }[]).find(
        (r) => r.kind === 'gc' && r.progress.note === note,
      )?.id;
      if (gcRunId === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(gcRunId).toBeDefined();
    expect(await lab.waitForRun(gcRunId ?? '')).toMatchObject({ status: 'success' });
    expect(await Promise.all(kept.map(rawDiskHash))).toEqual(keptHashes);

    // Gone is gone: a second deletion, or one of an id the catalog never had, is refused (CLI too).
    await auth(api().delete(`/api/v1/restore-points/${doomed}`)).expect(404);
    await auth(api().delete(`/api/v1/restore-points/${randomUUID()}`)).expect(404);
    const cli = buildCli(() => undefined, { HAVEN_URL: baseUrl, HAVEN_KEY: admin }).exitOverride();
    await expect(cli.parseAsync(['node', 'haven', 'restore-points', 'delete', doomed])).rejects.toThrow(
      `404 Not found: Restore point ${doomed} does not exist`,
    );
  }, 120_000);
});
