import type request from 'supertest';
import { type BackupLab, type RunBody, startBackupLab } from '../../../../apps/haven/src/backup-lab.fixture';

const MiB = 1024 * 1024;

interface DiskDecision {
  key: string;
  mode: string;
  reason: string;
}

interface CatalogPoint {
  id: string;
  kind: string;
  runId: string;
}

// The restore point the next incremental would build on is deleted by hand (DELETE
// /restore-points/:id): the next run must not write a delta over it, but take a full backup, say
// why, and that backup must restore as the VM was.
describe('backup.incremental after its newest restore point is deleted by hand', () => {
  let lab: BackupLab;
  const api = () => lab.api();
  const auth = (req: request.Test) => lab.auth(req);

  beforeAll(async () => {
    lab = await startBackupLab({
      seed: 'deleted-base',
      passphrase: 'deleted base passphrase',
      diskSize: 8 * MiB,
    });
  }, 120_000);

  afterAll(async () => {
    await (lab as BackupLab | undefined)?.close();
  });

  const decisions = (run: RunBody) =>
    (run.tasks[0]?.result as { disks: DiskDecision[] }).disks.map((disk) => [disk.mode, disk.reason]);
  const diskHash = async (vmUuid: string) => (await lab.simulator.diskHash(vmUuid)).sha256;

  async function pointOf(runId: string): Promise<CatalogPoint> {
    const listed = await auth(api().get(`/api/v1/restore-points?jobId=${lab.jobId}&limit=100`)).expect(200);
    const ofRun = (listed.body.items as CatalogPoint[]).filter((point) => point.runId === runId);
    expect(ofRun).toHaveLength(1);
    return ofRun[0];
  }

  it('takes a full backup next, saying why, and that restore point restores byte for byte', async () => {
    const full = await lab.runJob();
    expect([full.status, decisions(full)]).toEqual(['success', [['full', 'no-base-restore-point']]]);
    await lab.simulator.writeRandom(lab.vm.uuid, { blocks: 2, seed: 'before the incremental' });
    const incremental = await lab.runJob();
    expect([incremental.status, decisions(incremental)]).toEqual(['success', [['delta', 'base-available']]]);
    const latest = await pointOf(incremental.id);
    expect(latest.kind).toBe('incremental');

    const deleting = await auth(api().delete(`/api/v1/restore-points/${latest.id}`)).expect(202);
    const deleted = await lab.waitForRun(deleting.body.runId as string);
    expect([deleted.kind, deleted.status]).toEqual(['delete-restore-point', 'success']);
    await auth(api().get(`/api/v1/restore-points/${latest.id}`)).expect(404);

    await lab.simulator.writeRandom(lab.vm.uuid, { blocks: 2, seed: 'after the deletion' });
    const hashAtBackup = await diskHash(lab.vm.uuid);
    const next = await lab.runJob();
    expect([next.status, decisions(next)]).toEqual(['success', [['full', 'no-base-restore-point']]]);
    const point = await pointOf(next.id);
    expect(point.kind).toBe('full');

    // The VM moves on; the restore must bring back the content at the backup.
    await lab.simulator.writeRandom(lab.vm.uuid, { blocks: 2, seed: 'after the full' });
    expect(await diskHash(lab.vm.uuid)).not.toBe(hashAtBackup);
    const restoring = await auth(api().post(`/api/v1/restore-points/${point.id}/restore`))
      .send({ poolId: lab.poolId, name: 'after a deleted base' })
      .expect(202);
    const restored = await lab.waitForRun(restoring.body.runId as string);
    expect([restored.kind, restored.status]).toEqual(['restore', 'success']);
    const vmUuid = (restored.tasks[0]?.result as { vmUuid: string }).vmUuid;
    expect(await diskHash(vmUuid)).toBe(hashAtBackup);
  }, 180_000);
});
