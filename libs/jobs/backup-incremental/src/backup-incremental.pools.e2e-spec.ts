import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { loadConfig } from '@haven/config';
import { createTenantAdmin, readSystemAdminKey, scratchDir, simulatorLabAppEnv } from '@haven/testing';
import { XapiPool } from '@haven/xapi';
import { startXapiSimulator, type XapiSimulator } from '@haven/xapi-sim';
import { startAllInOne } from '../../../../apps/haven/src/haven.app';

const MiB = 1024 * 1024;

type Folder = { path: string; cleanup: () => Promise<void> };

interface RunView {
  id: string;
  status: string;
  kind: string;
  error: string | null;
  tasks: { subject: string; status: string; error: string | null; result: unknown }[];
}

interface RestoredVm {
  vmUuid: string;
  vmName: string;
}

// A job whose selection spans two pools (two simulators registered through the gateway): smart
// mode over every pool backs up the VMs of both; explicit mode finds each VM in its pool; a pool
// that stops answering fails only its own share of the run, and the run says which pool. Restore
// points of a VM of one pool (incremental, and backup.full archives) restore on the other pool.
describe('backup.incremental over several pools through the gateway', () => {
  const sims: Record<'a' | 'b', XapiSimulator | undefined> = { a: undefined, b: undefined };
  const sim = (name: 'a' | 'b'): XapiSimulator => {
    const started = sims[name];
    if (started === undefined) throw new Error(`simulator ${name} did not start`);
    return started;
  };
  let app: INestApplication;
  let baseUrl = '';
  let key = '';
  const folders: Record<string, Folder> = {};
  const ids: Record<string, string> = {};
  /** VM name -> uuid, over both pools (pool b's VMs are renamed lab-b-vm-N). */
  const vms: Record<string, string> = {};

  const api = () => request(baseUrl);
  const auth = (req: request.Test) => req.set('authorization', `Bearer ${key}`);

  beforeAll(async () => {
    for (const name of ['sim-a', 'sim-b', 'data', 'remote'])
      folders[name] = await scratchDir(`haven-pools-${name}-`);
    for (const name of ['a', 'b'] as const)
      sims[name] = await startXapiSimulator({
        stateDir: folders[`sim-${name}`].path,
        vms: 2,
        diskSize: 8 * MiB,
        seed: `pools-${name}`,
      });
    for (const name of ['a', 'b'] as const) {
      const pool = await XapiPool.connect({
        url: sim(name).url,
        username: sim(name).user,
        password: sim(name).password,
      });
      try {
        for (const vm of await pool.listVms()) {
          const vmName = name === 'a' ? vm.name : vm.name.replace('sim-', 'lab-b-');
          if (vmName !== vm.name) await pool.renameVm(vm.ref, vmName);
          vms[vmName] = vm.uuid;
        }
      } finally {
        await pool.close();
      }
    }
    app = await startAllInOne(
      loadConfig(
        simulatorLabAppEnv(folders['data'].path, [
          '@haven/remote-local',
          '@haven/job-backup-incremental',
          '@haven/job-backup-full',
        ]),
      ),
    );
    baseUrl = await app.getUrl();
    ({ key } = await createTenantAdmin(baseUrl, await readSystemAdminKey(folders['data'].path), 'acme'));
    for (const [name, poolName] of [
      ['a', 'sim'],
      ['b', 'lab-b'],
    ] as const) {
      const pool = await auth(api().post('/api/v1/pools'))
        .send({ name: poolName, url: sim(name).url, username: sim(name).user, password: sim(name).password })
        .expect(201);
      ids[name] = pool.body.id as string;
    }
    const remote = await auth(api().post('/api/v1/remotes'))
      .send({ name: 'local', type: 'local', settings: { path: folders['remote'].path } })
      .expect(201);
    ids['remote'] = remote.body.id as string;
  }, 60_000);

  afterAll(async () => {
    await (app as INestApplication | undefined)?.close();
    for (const started of Object.values(sims)) await started?.close();
    for (const folder of Object.values(folders)) await folder.cleanup();
  });

  async function createJob(
    name: string,
    selection: Record<string, unknown>,
    settings = {},
    type = 'backup.incremental',
  ): Promise<string> {
    const job = await auth(api().post('/api/v1/jobs'))
      .send({ name, type, selection, remoteIds: [ids['remote']], settings })
      .expect(201);
    return job.body.id as string;
  }

  async function waitForRun(runId: string): Promise<RunView> {
    for (;;) {
      const run = await auth(api().get(`/api/v1/runs/${runId}`)).expect(200);
      if (['success', 'partial', 'failure', 'cancelled'].includes(run.body.status as string))
        return run.body as RunView;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  async function runJob(jobId: string): Promise<RunView> {
    const started = await auth(api().post(`/api/v1/jobs/${jobId}/run`)).expect(202);
    return waitForRun(started.body.runId as string);
  }

  async function withPool<T>(name: 'a' | 'b', body: (pool: XapiPool) => Promise<T>): Promise<T> {
    const pool = await XapiPool.connect({
      url: sim(name).url,
      username: sim(name).user,
      password: sim(name).password,
    });
    try {
      return await body(pool);
    } finally {
      await pool.close();
    }
  }

  /** The content of each disk of a VM on one pool's simulator, by VBD position. */
  async function diskHashes(
    name: 'a' | 'b',
    vmUuid: string,
    positions: readonly number[],
  ): Promise<string[]> {
    const hashes: string[] = [];
    for (const position of positions) hashes.push((await sim(name).diskHash(vmUuid, {}, position)).sha256);
    return hashes;
  }

  /** The one restore point a run committed (one VM, one remote). */
  async function restorePointOf(jobId: string, runId: string): Promise<{ id: string; kind: string }> {
    const listed = await auth(api().get(`/api/v1/restore-points?jobId=${jobId}&limit=100`)).expect(200);
    const ofRun = (listed.body.items as { id: string; kind: string; runId: string }[]).filter(
      (point) => point.runId === runId,
    );
    expect(ofRun).toHaveLength(1);
    return ofRun[0];
  }

  /** Restores a restore point as a new VM on pool b's SR `srUuid`, through the gateway. */
  async function restoreOnPoolB(pointId: string, srUuid: string, name: string): Promise<RestoredVm> {
    const started = await auth(api().post(`/api/v1/restore-points/${pointId}/restore`))
      .send({ poolId: ids['b'], srUuid, name })
      .expect(202);
    const run = await waitForRun(started.body.runId as string);
    expect([run.kind, run.status, run.tasks.map((task) => task.error)]).toEqual([
      'restore',
      'success',
      [null],
    ]);
    return run.tasks[0]?.result as RestoredVm;
  }

  /** Checks the VM is on pool b only, with every disk on `srUuid`, and returns its number of disks. */
  async function expectOnPoolBOnly(restored: RestoredVm, srUuid: string, name: string): Promise<number> {
    const onA = await withPool('a', (pool) => pool.listVms());
    expect(onA.map((vm) => vm.uuid)).not.toContain(restored.vmUuid);
    expect(onA.map((vm) => vm.name)).not.toContain(name);
    return withPool('b', async (pool) => {
      const vm = await pool.getVm(restored.vmUuid);
      expect(vm.name).toBe(name);
      expect(vm.disks.map((disk) => disk.srUuid)).toEqual(vm.disks.map(() => srUuid));
      return vm.disks.length;
    });
  }

  const outcomes = (run: RunView) => run.tasks.map((task) => [task.subject, task.status]).sort();

  it('refuses selections naming unknown pools or a pool pattern that matches none, with 400s naming the field', async () => {
    const unknown = '0b9ab2f6-2f05-4c3f-9a57-6a0d4cf1e3aa';
    const refused = async (selection: Record<string, unknown>) =>
      (
        await auth(api().post('/api/v1/jobs'))
          .send({ name: 'bad', type: 'backup.incremental', selection, remoteIds: [ids['remote']] })
          .expect(400)
      ).body as { errors: { field: string; message: string }[] };
    expect((await refused({ mode: 'smart', pools: [ids['a'], unknown] })).errors).toEqual([
      { field: 'selection.pools', message: `names pools that are not pools of this tenant: ${unknown}` },
    ]);
    expect((await refused({ mode: 'smart', pools: 'prod-*' })).errors).toEqual([
      {
        field: 'selection.pools',
        message: '"prod-*" matches no pool of this tenant (its pools: lab-b, sim)',
      },
    ]);
    expect((await refused({ mode: 'smart', pools: ['not-a-pool'] })).errors[0]?.field).toBe(
      'selection.pools',
    );
    expect((await refused({ mode: 'smart', pools: '  ' })).errors[0]?.message).toContain('empty pattern');
    expect((await refused({ mode: 'smart' })).errors[0]).toMatchObject({
      field: 'selection.pools',
      message: expect.stringContaining('is required in smart mode'),
    });
    expect((await refused({ mode: 'smart', pools: '*', poolId: ids['a'] })).errors[0]?.field).toBe(
      'selection.pools',
    );
    expect((await refused({ mode: 'explicit', poolId: unknown, vms: ['x'] })).errors).toEqual([
      { field: 'selection.poolId', message: `is not a pool of this tenant (${unknown})` },
    ]);
    const listed = await auth(api().get('/api/v1/jobs')).expect(200);
    expect(listed.body.items).toEqual([]);
  });

  it('smart mode over every pool backs up the VMs of both pools', async () => {
    ids['smart'] = await createJob('every pool', { mode: 'smart', pools: '*' }, { retries: 1 });
    const run = await runJob(ids['smart']);
    expect(run.status).toBe('success');
    expect(outcomes(run)).toEqual([
      ['lab-b-vm-0', 'success'],
      ['lab-b-vm-1', 'success'],
      ['sim-vm-0', 'success'],
      ['sim-vm-1', 'success'],
    ]);
    const points = await auth(api().get(`/api/v1/restore-points?jobId=${ids['smart']}&limit=100`)).expect(
      200,
    );
    expect((points.body.items as { vmUuid: string }[]).map((point) => point.vmUuid).sort()).toEqual(
      Object.values(vms).sort(),
    );
  }, 120_000);

  it('explicit mode finds each listed VM in its own pool, and fails one no pool has, naming it', async () => {
    const gone = '4a1f0c55-0000-4000-8000-000000000000';
    const jobId = await createJob('listed', {
      mode: 'explicit',
      vms: [vms['lab-b-vm-1'], vms['sim-vm-0'], gone],
    });
    const run = await runJob(jobId);
    expect(run.status).toBe('partial');
    expect(outcomes(run)).toEqual([
      [gone, 'failure'],
      ['lab-b-vm-1', 'success'],
      ['sim-vm-0', 'success'],
    ]);
    expect(run.tasks.find((task) => task.subject === gone)?.error).toContain(
      `VM ${gone} is in no pool of this job (searched "lab-b", "sim")`,
    );
  }, 120_000);

  it('a pool that does not answer: the other pool is backed up, and the run says which pool failed', async () => {
    sim('b').setFaults({ unreachable: true });
    let run: RunView;
    try {
      run = await runJob(ids['smart'] ?? '');
    } finally {
      sim('b').setFaults({ unreachable: false });
    }
    expect(run.status).toBe('partial');
    expect(outcomes(run)).toEqual([
      ['pool lab-b', 'failure'],
      ['sim-vm-0', 'success'],
      ['sim-vm-1', 'success'],
    ]);
    const failed = run.tasks.find((task) => task.subject === 'pool lab-b');
    expect(failed?.error).toContain('pool "lab-b" did not answer');
    expect(failed?.error).toContain(sim('b').url);
    // The job's retries: planning was tried again before the silent pool was given up.
    const logs = await auth(api().get(`/api/v1/runs/${run.id}/logs?limit=100`)).expect(200);
    expect((logs.body.items as { message: string }[]).map((line) => line.message)).toContainEqual(
      expect.stringMatching(/^planning attempt 1 failed, retrying: pool "lab-b" did not answer/),
    );
  }, 120_000);

  it('restores an incremental restore point of a pool a VM as a new VM on an SR of pool b, with the disks at backup time', async () => {
    const source = vms['sim-vm-0'] ?? '';
    // Disks by position (userdevice order), as the simulator hashes them: two, so a restore that
    // mixed them up or dropped one is seen.
    const positions = sim('a')
      .listVms()
      .find((vm) => vm.uuid === source)!
      .disks.map((_, position) => position);
    expect(positions).toEqual([0, 1]);
    const jobId = await createJob('a to b', { mode: 'explicit', poolId: ids['a'], vms: [source] });
    const full = await runJob(jobId);
    expect(full.status).toBe('success');
    const atFull = await diskHashes('a', source, positions);
    await sim('a').writeRandom(source, { blocks: 2, seed: 'between backups' }, 0);
    await sim('a').writeRandom(source, { blocks: 1, seed: 'between backups, disk 1' }, 1);
    const atIncremental = await diskHashes('a', source, positions);
    const incremental = await runJob(jobId);
    expect(incremental.status).toBe('success');
    const disks = (incremental.tasks[0]?.result as { disks: { key: string; mode: string }[] }).disks;
    expect(disks.map((disk) => [disk.key, disk.mode])).toEqual([
      ['0', 'delta'],
      ['1', 'delta'],
    ]);
    const point = await restorePointOf(jobId, incremental.id);
    expect(point.kind).toBe('incremental');
    // The VM moves on after the backup, and each state differs: only the incremental's content matches.
    await sim('a').writeRandom(source, { blocks: 2, seed: 'after the backups' }, 0);
    await sim('a').writeRandom(source, { blocks: 2, seed: 'after the backups, disk 1' }, 1);
    const now = await diskHashes('a', source, positions);
    for (const position of [0, 1]) {
      expect(atIncremental[position]).not.toBe(atFull[position]);
      expect(atIncremental[position]).not.toBe(now[position]);
    }

    // An SR of pool b that is not its default, and that pool a does not have.
    const target = (await withPool('b', (pool) => pool.listSrs())).find(
      (sr) => sr.acceptsDisks && !sr.isDefault,
    )!;
    expect(target).toBeDefined();
    expect((await withPool('a', (pool) => pool.listSrs())).map((sr) => sr.uuid)).not.toContain(target.uuid);
    const restored = await restoreOnPoolB(point.id, target.uuid, 'incremental from pool a');
    expect(await expectOnPoolBOnly(restored, target.uuid, 'incremental from pool a')).toBe(positions.length);
    expect(await diskHashes('b', restored.vmUuid, positions)).toEqual(atIncremental);
  }, 180_000);

  it('restores a backup.full archive of a pool a VM as a new VM on an SR of pool b, with the disks at backup time', async () => {
    const source = vms['sim-vm-0'] ?? '';
    const positions = [0, 1];
    const jobId = await createJob(
      'a to b, full',
      { mode: 'explicit', poolId: ids['a'], vms: [source] },
      { compression: 'zstd' },
      'backup.full',
    );
    const atBackup = await diskHashes('a', source, positions);
    const run = await runJob(jobId);
    expect(run.status).toBe('success');
    const point = await restorePointOf(jobId, run.id);
    expect(point.kind).toBe('full');
    await sim('a').writeRandom(source, { blocks: 2, seed: 'after the full backup' }, 0);
    await sim('a').writeRandom(source, { blocks: 2, seed: 'after the full backup, disk 1' }, 1);
    const now = await diskHashes('a', source, positions);
    for (const position of positions) expect(now[position]).not.toBe(atBackup[position]);

    const target = (await withPool('b', (pool) => pool.listSrs())).find(
      (sr) => sr.acceptsDisks && !sr.isDefault,
    )!;
    const restored = await restoreOnPoolB(point.id, target.uuid, 'archive from pool a');
    expect(await expectOnPoolBOnly(restored, target.uuid, 'archive from pool a')).toBe(positions.length);
    expect(await diskHashes('b', restored.vmUuid, positions)).toEqual(atBackup);
  }, 180_000);
});
