import { createHash } from 'node:crypto';
import type request from 'supertest';
import localRemote from '@haven/remote-local';
import s3Remote from '@haven/remote-s3';
import type { RemoteStore } from '@haven/remote-sdk';
import { manifestKey, openRepository, type Repository } from '@haven/repository';
import { startS3rver, type S3rverHandle } from '@haven/testing';
import { type BackupLab, type RunBody, startBackupLab } from '../../../../apps/haven/src/backup-lab.fixture';

const MiB = 1024 * 1024;
const LOCAL_PASSPHRASE = 'lifecycle local passphrase';
const S3_PASSPHRASE = 'lifecycle s3 passphrase';
const BUCKET = 'haven-lifecycle';

interface BackupTask {
  status: string;
  error: string | null;
  result: {
    disks: { key: string; mode: string; reason: string }[];
    restorePoints: { remoteId: string; manifestKey: string; kind: string }[];
    expiredRestorePoints?: { remoteId: string; manifestKey: string }[];
  };
}

interface CatalogPoint {
  id: string;
  remoteId: string;
  runId: string;
  kind: string;
}

/** One backup: the run, what each disk held when it ran (by disk key), its restore points. */
interface Backup {
  runId: string;
  hashes: Record<string, string>;
  manifestKeys: Record<string, string>;
}

async function sha256(stream: AsyncIterable<Uint8Array>): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk);
  return hash.digest('hex');
}

// The product's lifecycle through the gateway: one encrypted incremental job writing to a local
// remote and an S3 remote (s3rver) at once, six backups with guest writes between them, a
// schedule's retention pruning to three, garbage collection, then every remaining restore point
// restored and compared with what the simulator's disks held at its backup.
describe('incremental job on a local and an S3 remote: backups, prune, gc, restores', () => {
  let lab: BackupLab;
  let s3: S3rverHandle;
  let localFolder = '';
  let s3RemoteId = '';
  let jobId = '';
  let scheduleId = '';
  const backups: Backup[] = [];
  /** Catalog entries of the backups that the prune expires, to check they are gone. */
  let expiredCatalogIds: string[] = [];
  const api = () => lab.api();
  const auth = (req: request.Test) => lab.auth(req);

  beforeAll(async () => {
    s3 = await startS3rver({ buckets: [BUCKET] });
    lab = await startBackupLab({
      seed: 'lifecycle',
      passphrase: LOCAL_PASSPHRASE,
      plugins: ['@haven/remote-local', '@haven/remote-s3', '@haven/job-backup-incremental'],
    });
    const local = await auth(api().get(`/api/v1/remotes/${lab.remoteId}`)).expect(200);
    localFolder = local.body.settings.path as string;
  }, 120_000);

  afterAll(async () => {
    await (lab as BackupLab | undefined)?.close();
    await (s3 as S3rverHandle | undefined)?.stop();
  });

  const s3Settings = () => ({
    endpoint: s3.endpoint,
    region: s3.region,
    bucket: BUCKET,
    prefix: 'haven',
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
  });

  /** Opens a remote's repository the way a restore on a fresh install would: settings and key only. */
  async function withRepository<T>(
    remoteId: string,
    work: (repository: Repository) => Promise<T>,
  ): Promise<T> {
    const store: RemoteStore =
      remoteId === s3RemoteId
        ? await s3Remote.create(s3Settings(), { name: 's3-check' })
        : await localRemote.create({ path: localFolder }, { name: 'local-check' });
    try {
      const key = remoteId === s3RemoteId ? S3_PASSPHRASE : LOCAL_PASSPHRASE;
      return await work(await openRepository(store, { key }));
    } finally {
      await store.close();
    }
  }

  const remoteIds = () => [lab.remoteId, s3RemoteId];

  /** Hashes of the VM's disks now, by disk key (the VBD position). */
  async function diskHashes(vmUuid: string): Promise<Record<string, string>> {
    const vm = lab.simulator.listVms().find((candidate) => candidate.uuid === vmUuid);
    if (vm === undefined) throw new Error(`no VM ${vmUuid} in the simulator`);
    const hashes: Record<string, string> = {};
    for (const disk of vm.disks) hashes[disk.userdevice] = (await lab.simulator.diskHash(disk.vdi)).sha256;
    return hashes;
  }

  /** Guest writes between backups: whole blocks on every disk and a few bytes inside a block of the first. */
  async function guestWrites(round: number): Promise<void> {
    for (const [position] of lab.vm.disks.entries())
      await lab.simulator.writeRandom(
        lab.vm.uuid,
        { blocks: 2, seed: `round-${round}-${position}` },
        position,
      );
    await lab.simulator.writeRandom(lab.vm.uuid, {
      bytes: 3000,
      offset: (round * 3 + 1) * MiB + 777,
      seed: `partial-${round}`,
    });
  }

  /** Snapshot times of this suite's backups: a minute apart, in the past (see backup()). */
  const clockStart = Date.now() - 60 * 60_000;

  async function backup(): Promise<{ run: RunBody; task: BackupTask }> {
    const hashes = await diskHashes(lab.vm.uuid);
    // XAPI's snapshot times are to the second and a run against the simulator may take less: each
    // backup gets its own minute on the simulator's clock, so retention knows which is newest.
    lab.simulator.setClock(new Date(clockStart + backups.length * 60_000));
    const exportsBefore = lab.simulator.exports().at(-1)?.sequence ?? 0;
    const started = await auth(api().post(`/api/v1/jobs/${jobId}/run`))
      .send({ scheduleId })
      .expect(202);
    const run = await lab
      .waitForRun(started.body.runId as string)
      .finally(() => lab.simulator.setClock(null));
    expect([run.status, run.tasks[0]?.error ?? null]).toEqual(['success', null]);
    const task = run.tasks[0] as unknown as BackupTask;
    // Read once whatever the number of remotes: one export of each disk's snapshot, fanned out.
    expect(
      lab.simulator
        .exports(exportsBefore)
        .map((read) => read.snapshotOf)
        .sort(),
    ).toEqual(lab.vm.disks.map((disk) => disk.uuid).sort());
    backups.push({
      runId: run.id,
      hashes,
      manifestKeys: Object.fromEntries(task.result.restorePoints.map((p) => [p.remoteId, p.manifestKey])),
    });
    return { run, task };
  }

  async function catalogPoints(): Promise<CatalogPoint[]> {
    const listed = await auth(api().get(`/api/v1/restore-points?jobId=${jobId}&limit=100`)).expect(200);
    return listed.body.items as CatalogPoint[];
  }

  it('sets up an S3 remote, encrypted, and one job writing to both remotes', async () => {
    const remote = await auth(api().post('/api/v1/remotes'))
      .send({ name: 's3', type: 's3', settings: s3Settings(), encryption: { passphrase: S3_PASSPHRASE } })
      .expect(201);
    s3RemoteId = remote.body.id;
    const job = await auth(api().post('/api/v1/jobs'))
      .send({
        name: 'lifecycle',
        type: 'backup.incremental',
        selection: { poolId: lab.poolId, mode: 'explicit', vms: [lab.vm.uuid] },
        remoteIds: remoteIds(),
        settings: { compression: 'zstd' },
      })
      .expect(201);
    jobId = job.body.id;
    const schedule = await auth(api().post('/api/v1/schedules'))
      .send({
        jobId,
        name: 'daily',
        cron: '0 1 * * *',
        timezone: 'Europe/Paris',
        enabled: false,
        retention: { keep: 10 },
      })
      .expect(201);
    scheduleId = schedule.body.id;
  });

  it('a full backup, then five incrementals after guest writes, each read once and stored on both remotes', async () => {
    const { task } = await backup();
    expect(task.result.disks.map((d) => [d.key, d.mode])).toEqual(
      lab.vm.disks.map((d) => [d.userdevice, 'full']),
    );
    expect(task.result.restorePoints.map((p) => [p.remoteId, p.kind])).toEqual(
      remoteIds().map((id) => [id, 'full']),
    );
    let partialBlocks = 0;
    for (let round = 1; round <= 5; round++) {
      await guestWrites(round);
      const { task: next } = await backup();
      expect(next.result.disks.map((d) => [d.key, d.mode, d.reason])).toEqual(
        lab.vm.disks.map((d) => [d.userdevice, 'delta', 'base-available']),
      );
      expect(next.result.restorePoints.map((p) => [p.remoteId, p.kind])).toEqual(
        remoteIds().map((id) => [id, 'incremental']),
      );
      partialBlocks += lab.simulator
        .exports()
        .slice(-lab.vm.disks.length)
        .reduce((sum, read) => sum + read.partialBlocks, 0);
    }
    // The few bytes written inside a block came with a partial sector bitmap (unless that round's
    // whole-block writes hit the same block), which the backup completed from the previous restore
    // point: every restore point is checked below.
    expect(partialBlocks).toBeGreaterThan(0);
    // Each backup changed what the disks hold.
    expect(new Set(backups.map((b) => JSON.stringify(b.hashes))).size).toBe(6);
    expect(await catalogPoints()).toHaveLength(12);
  }, 300_000);

  it('a run for the schedule, its retention now keep 3, expires the older backups on both remotes and in the catalog', async () => {
    const before = await catalogPoints();
    const keptRuns = new Set(backups.slice(4).map((b) => b.runId));
    expiredCatalogIds = before.filter((p) => !keptRuns.has(p.runId)).map((p) => p.id);
    expect(expiredCatalogIds).toHaveLength(8);
    await auth(api().patch(`/api/v1/schedules/${scheduleId}`))
      .send({ retention: { keep: 3 } })
      .expect(200);
    await guestWrites(6);
    const { task } = await backup();
    const expected = backups
      .slice(0, 4)
      .flatMap((b) => remoteIds().map((remoteId) => ({ remoteId, manifestKey: b.manifestKeys[remoteId] })));
    const byKey = (a: { manifestKey: string }, b: { manifestKey: string }) =>
      a.manifestKey.localeCompare(b.manifestKey);
    expect([...(task.result.expiredRestorePoints ?? [])].sort(byKey)).toEqual(expected.sort(byKey));

    const after = await catalogPoints();
    expect(after.map((p) => [p.runId, p.remoteId]).sort()).toEqual(
      backups
        .slice(4)
        .flatMap((b) => remoteIds().map((remoteId) => [b.runId, remoteId]))
        .sort(),
    );
    for (const id of expiredCatalogIds) await auth(api().get(`/api/v1/restore-points/${id}`)).expect(404);
    for (const remoteId of remoteIds()) {
      const onRemote = await withRepository(remoteId, (repository) => repository.listRestorePointIds());
      expect(onRemote.map((id) => manifestKey(id)).sort()).toEqual(
        backups
          .slice(4)
          .map((b) => b.manifestKeys[remoteId])
          .sort(),
      );
    }
  }, 120_000);

  it('garbage collection frees the chunks only expired backups used, and every kept one is still whole', async () => {
    // The prune started a gc of each remote; its 24 h safety window spares today's chunks.
    let automatic: { id: string; kind: string }[] = [];
    for (let i = 0; i < 300 && automatic.length < 2; i++) {
      const runs = await auth(api().get('/api/v1/runs?limit=100')).expect(200);
      automatic = (runs.body.items as { id: string; kind: string }[]).filter((r) => r.kind === 'gc');
      if (automatic.length < 2) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(automatic).toHaveLength(2);
    for (const run of automatic) expect((await lab.waitForRun(run.id)).status).toBe('success');

    for (const remoteId of remoteIds()) {
      const before = await withRepository(remoteId, (repository) => repository.statistics());
      const started = await auth(api().post(`/api/v1/remotes/${remoteId}/gc`))
        .send({ safetyWindowMinutes: 0 })
        .expect(202);
      const gc = await lab.waitForRun(started.body.runId as string);
      expect(gc).toMatchObject({ status: 'success', kind: 'gc' });
      const freed = gc.tasks[0]?.result as { freedChunks: number; freedBytes: number };
      expect(freed.freedChunks).toBeGreaterThan(0);
      const after = await withRepository(remoteId, (repository) => repository.statistics());
      expect(after.repository.chunkObjects).toBe(before.repository.chunkObjects - freed.freedChunks);
      expect(after.repository.chunkBytes).toBe(before.repository.chunkBytes - freed.freedBytes);
      // Nothing unreferenced is left, and the kept restore points' figures did not move.
      expect(after.repository.chunkBytes).toBe(after.repository.storedBytes);
      expect(after.repository.storedBytes).toBe(before.repository.storedBytes);
      expect(after.repository.restorePoints).toBe(3);

      const verify = await auth(api().post(`/api/v1/remotes/${remoteId}/verify`))
        .send({})
        .expect(202);
      const verified = await lab.waitForRun(verify.body.runId as string);
      expect(verified).toMatchObject({ status: 'success', kind: 'verify' });
      expect(verified.tasks[0]?.result).toMatchObject({
        ok: true,
        complete: true,
        restorePoints: 3,
        missingChunks: [],
        damagedChunks: [],
        damagedRestorePoints: [],
      });
    }
  }, 180_000);

  it('every remaining restore point downloads, raw, as the disks were at its backup, from both remotes', async () => {
    const points = await catalogPoints();
    expect(points).toHaveLength(6);
    for (const point of points) {
      const backupOf = backups.find((b) => b.runId === point.runId);
      if (backupOf === undefined) throw new Error(`restore point ${point.id} of an unknown run`);
      for (const [key, expected] of Object.entries(backupOf.hashes)) {
        const response = await fetch(
          `${lab.baseUrl}/api/v1/restore-points/${point.id}/disks/${key}?format=raw`,
          { headers: { authorization: `Bearer ${lab.admin}` } },
        );
        expect(response.status).toBe(200);
        const body = response.body;
        if (body === null) throw new Error('empty download');
        expect([point.remoteId, point.runId, key, await sha256(body)]).toEqual([
          point.remoteId,
          point.runId,
          key,
          expected,
        ]);
      }
    }
  }, 180_000);

  it('every remaining restore point restores as a new VM identical to the VM at its backup', async () => {
    const points = await catalogPoints();
    for (const point of points) {
      const backupOf = backups.find((b) => b.runId === point.runId);
      if (backupOf === undefined) throw new Error(`restore point ${point.id} of an unknown run`);
      const started = await auth(api().post(`/api/v1/restore-points/${point.id}/restore`))
        .send({ poolId: lab.poolId, name: `restored ${point.id}` })
        .expect(202);
      const run = await lab.waitForRun(started.body.runId as string);
      expect([point.remoteId, run.status, run.error]).toEqual([point.remoteId, 'success', null]);
      const restored = (run.tasks[0]?.result as { vmUuid: string }).vmUuid;
      expect([point.remoteId, point.runId, await diskHashes(restored)]).toEqual([
        point.remoteId,
        point.runId,
        backupOf.hashes,
      ]);
    }
  }, 300_000);
});
