import { createHash } from 'node:crypto';
import { createReadStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type request from 'supertest';
import { DataSource } from 'typeorm';
import { createRawStreamFromVhdStream } from '@haven/vhd';
import { buildCli } from '../../cli/src/haven.cli';
import { type BackupLab, startBackupLab } from './backup-lab.fixture';

const MiB = 1024 * 1024;

async function sha256(stream: AsyncIterable<Buffer>): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk);
  return hash.digest('hex');
}

describe('restore points after a backup: disk downloads (raw with ranges, VHD) and remote sync', () => {
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
    // XAPI's snapshot times are to the second and a run against the simulator takes less: each run
    // gets its own minute on the simulator's clock, or retention could not tell the newest apart.
    const start = Date.now();
    for (let i = 0; i < 3; i++) {
      lab.simulator.setClock(new Date(start + (i + 1) * 60_000));
      runs.push(await runToEnd({ scheduleId: schedule.body.id }));
    }
    lab.simulator.setClock(null);
    const points = await auth(api().get(`/api/v1/restore-points?jobId=${lab.jobId}`)).expect(200);
    // The unscheduled first backup is not this schedule's to expire; of the three scheduled ones, two stay.
    expect(points.body.items).toHaveLength(3);
    const listed = await Promise.all(
      points.body.items.map(
        async (p: { id: string }) =>
          (await auth(api().get(`/api/v1/restore-points/${p.id}`)).expect(200)).body,
      ),
    );
    const runIds = listed.map((p) => p.runId);
    expect(runIds).toContain(runs[1]);
    expect(runIds).toContain(runs[2]);
    expect(runIds).not.toContain(runs[0]);
    // The remote agrees: a sync finds exactly those three.
    const lines: string[] = [];
    await buildCli((text) => lines.push(text), { HAVEN_URL: baseUrl, HAVEN_KEY: admin })
      .exitOverride()
      .parseAsync(['node', 'haven', 'remotes', 'sync', remoteId]);
    expect(lines.pop()).toBe('Remote nas: 3 restore point(s) found, 0 added to the catalog');
  }, 120_000);
});
