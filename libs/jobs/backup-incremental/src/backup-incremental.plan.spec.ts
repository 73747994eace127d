import {
  type JobDefinition,
  type JobPlanContext,
  type JobPlanResources,
  type PoolAccess,
  PlanUnavailableError,
} from '@haven/plugin-sdk';
import { scratchDir } from '@haven/testing';
import { XapiPool } from '@haven/xapi';
import { startXapiSimulator, type XapiSimulator } from '@haven/xapi-sim';
import { BACKUP_INCREMENTAL_TASK, planBackupIncremental } from './backup-incremental.plugin';
import { globMatcher } from './vm.selection';

// Smart-mode selection rules against the simulated pool "sim" (6 VMs: even ones Running +
// "production", odd ones Halted + "test"), and selection over it and a second pool "lab-b" (2 VMs).
describe('backup.incremental planning', () => {
  let sim: XapiSimulator;
  let simB: XapiSimulator;
  let state: { path: string; cleanup: () => Promise<void> };
  let stateB: { path: string; cleanup: () => Promise<void> };
  let pool: XapiPool;
  const uuids: Record<string, string> = {};
  const uuidsB: Record<string, string> = {};

  beforeAll(async () => {
    state = await scratchDir('haven-plan-sim-');
    stateB = await scratchDir('haven-plan-sim-b-');
    sim = await startXapiSimulator({ stateDir: state.path, vms: 6, diskSize: 4 * 1024 * 1024, seed: 'plan' });
    simB = await startXapiSimulator({
      stateDir: stateB.path,
      vms: 2,
      diskSize: 4 * 1024 * 1024,
      seed: 'plan-b',
    });
    const other = await XapiPool.connect({ url: simB.url, username: simB.user, password: simB.password });
    for (const vm of await other.listVms()) uuidsB[vm.name] = vm.uuid;
    await other.close();
    pool = await XapiPool.connect({ url: sim.url, username: sim.user, password: sim.password });
    for (const vm of await pool.listVms()) uuids[vm.name] = vm.uuid;
    const ref = async (name: string) => (await pool.getVm(uuids[name] ?? '')).ref;
    await pool.addTag(await ref('sim-vm-2'), 'no-backup');
    await pool.addTag(await ref('sim-vm-3'), 'gold');
    await pool.addTag(await ref('sim-vm-4'), 'gold');
    await pool.setOtherConfig(await ref('sim-vm-5'), 'VM', 'haven:managed', 'replica');
  });

  afterAll(async () => {
    await pool.close();
    await sim.close();
    await simB.close();
    await state.cleanup();
    await stateB.cleanup();
  });

  const pools: Record<string, { name: string; sim: () => XapiSimulator }> = {
    'pool-1': { name: 'sim', sim: () => sim },
    'pool-2': { name: 'lab-b', sim: () => simB },
  };

  /** A plan context over both pools; `selection` is stored as given (no pool added). */
  function contextOver(selection: Record<string, unknown>): JobPlanContext {
    const job: JobDefinition = {
      id: 'job-1',
      tenantId: 'tenant-1',
      name: 'nightly',
      type: 'backup.incremental',
      selection,
      remoteIds: ['remote-1'],
      settings: {},
    };
    const resources: JobPlanResources = {
      pools: () =>
        Promise.resolve(
          Object.entries(pools)
            .map(([id, entry]) => ({ id, name: entry.name }))
            .sort((a, b) => a.name.localeCompare(b.name)),
        ),
      pool: (id) => {
        const entry = Object.hasOwn(pools, id) ? pools[id] : undefined;
        if (entry === undefined) return Promise.reject(new Error(`unknown pool ${id}`));
        const access: PoolAccess = {
          id,
          name: entry.name,
          url: entry.sim().url,
          username: entry.sim().user,
          password: entry.sim().password,
          allowUnauthorized: false,
        };
        return Promise.resolve(access);
      },
      remote: (id) => Promise.reject(new Error(`planning must not open remote ${id}`)),
    };
    return { job, runId: 'run-1', trigger: 'manual', signal: new AbortController().signal, resources };
  }

  /** The single-pool selections of jobs made before selections spanned pools. */
  const context = (selection: Record<string, unknown>): JobPlanContext =>
    contextOver({ poolId: 'pool-1', ...selection });

  const subjects = async (selection: Record<string, unknown>) =>
    (await planBackupIncremental(context(selection))).map((task) => task.subject);

  it('smart mode with no filter takes every VM except no-backup and Haven-managed ones', async () => {
    expect(await subjects({ mode: 'smart' })).toEqual(['sim-vm-0', 'sim-vm-1', 'sim-vm-3', 'sim-vm-4']);
  });

  it('selects by any of the tags, minus excluded tags', async () => {
    expect(await subjects({ mode: 'smart', tags: ['gold', 'production'] })).toEqual([
      'sim-vm-0',
      'sim-vm-3',
      'sim-vm-4',
    ]);
    expect(await subjects({ mode: 'smart', tags: ['production'], excludeTags: ['gold'] })).toEqual([
      'sim-vm-0',
    ]);
  });

  it('filters by power state and name glob', async () => {
    expect(await subjects({ mode: 'smart', powerState: 'running' })).toEqual(['sim-vm-0', 'sim-vm-4']);
    expect(await subjects({ mode: 'smart', powerState: 'halted' })).toEqual(['sim-vm-1', 'sim-vm-3']);
    expect(await subjects({ mode: 'smart', namePattern: 'sim-vm-[0-9]' })).toEqual([]);
    expect(await subjects({ mode: 'smart', namePattern: 'sim-*-?' })).toEqual([
      'sim-vm-0',
      'sim-vm-1',
      'sim-vm-3',
      'sim-vm-4',
    ]);
    expect(await subjects({ mode: 'smart', namePattern: '*3' })).toEqual(['sim-vm-3']);
  });

  it('explicit mode makes one task per listed VM, named, with the uuid as input and the VM catalog lock; never no-backup ones', async () => {
    const tasks = await planBackupIncremental(
      context({ mode: 'explicit', vms: [uuids['sim-vm-1'], uuids['sim-vm-2'], uuids['sim-vm-4']] }),
    );
    expect(tasks).toEqual([
      {
        type: BACKUP_INCREMENTAL_TASK,
        subject: 'sim-vm-1',
        input: { vm: uuids['sim-vm-1'], vmName: 'sim-vm-1', poolId: 'pool-1', poolName: 'sim' },
        lockKey: `vm:${uuids['sim-vm-1'] ?? ''}`,
      },
      {
        type: BACKUP_INCREMENTAL_TASK,
        subject: 'sim-vm-4',
        input: { vm: uuids['sim-vm-4'], vmName: 'sim-vm-4', poolId: 'pool-1', poolName: 'sim' },
        lockKey: `vm:${uuids['sim-vm-4'] ?? ''}`,
      },
    ]);
  });

  it('globs match whole names, with regex characters taken literally', () => {
    expect(globMatcher('web.*')('web.1')).toBe(true);
    expect(globMatcher('web.*')('webx1')).toBe(false);
    expect(globMatcher('db?')('db12')).toBe(false);
  });

  /** Each task as "<subject>@<pool name>", or "<subject>!" for one failed at planning. */
  const placed = async (selection: Record<string, unknown>) =>
    (await planBackupIncremental(contextOver(selection))).map((task) =>
      task.failure === undefined ? `${task.subject}@${String(task.input['poolName'])}` : `${task.subject}!`,
    );

  describe('over several pools', () => {
    it("smart mode selects in every pool the pattern names, each task naming its VM's pool", async () => {
      expect(await placed({ mode: 'smart', pools: '*' })).toEqual([
        'sim-vm-0@lab-b',
        'sim-vm-0@sim',
        'sim-vm-1@lab-b',
        'sim-vm-1@sim',
        'sim-vm-3@sim',
        'sim-vm-4@sim',
      ]);
      expect(await placed({ mode: 'smart', pools: 'lab-?', powerState: 'running' })).toEqual([
        'sim-vm-0@lab-b',
      ]);
      expect(await placed({ mode: 'smart', pools: ['pool-1', 'pool-2'], tags: ['gold'] })).toEqual([
        'sim-vm-3@sim',
        'sim-vm-4@sim',
      ]);
      const [task] = await planBackupIncremental(
        contextOver({ mode: 'smart', pools: ['pool-2'], namePattern: '*1' }),
      );
      expect(task).toEqual({
        type: BACKUP_INCREMENTAL_TASK,
        subject: 'sim-vm-1',
        input: { vm: uuidsB['sim-vm-1'], vmName: 'sim-vm-1', poolId: 'pool-2', poolName: 'lab-b' },
        lockKey: `vm:${uuidsB['sim-vm-1'] ?? ''}`,
      });
    });

    it('explicit mode finds each listed VM in whichever pool has it, and fails the one no pool has, naming it', async () => {
      const gone = '4a1f0c55-0000-4000-8000-000000000000';
      const tasks = await planBackupIncremental(
        contextOver({ mode: 'explicit', vms: [uuidsB['sim-vm-1'], gone, uuids['sim-vm-3']] }),
      );
      expect(tasks.map((task) => [task.subject, task.input['poolId']])).toEqual([
        ['sim-vm-1', 'pool-2'],
        [gone, undefined],
        ['sim-vm-3', 'pool-1'],
      ]);
      expect(tasks[1]?.failure).toEqual({
        message: expect.stringContaining(`VM ${gone} is in no pool of this job (searched "lab-b", "sim")`),
        transient: false,
      });
      // Only the pools the job names are searched.
      expect(await placed({ mode: 'explicit', pools: ['pool-1'], vms: [uuidsB['sim-vm-0']] })).toEqual([
        `${uuidsB['sim-vm-0'] ?? ''}!`,
      ]);
    });

    it('refuses a pool pattern that matches no pool, naming the pools there are', async () => {
      await expect(planBackupIncremental(contextOver({ mode: 'smart', pools: 'prod-*' }))).rejects.toThrow(
        'job selection pools "prod-*" matches no pool of this tenant (its pools: lab-b, sim)',
      );
      await expect(planBackupIncremental(contextOver({ mode: 'smart' }))).rejects.toThrow(
        'smart job selection names no pool',
      );
      await expect(
        planBackupIncremental(contextOver({ mode: 'smart', poolId: 'pool-1', pools: '*' })),
      ).rejects.toThrow('both "pools" and "poolId"');
    });

    it('a pool removed from Haven among the ids fails its own share; alone, it fails the plan', async () => {
      const tasks = await planBackupIncremental(
        contextOver({ mode: 'smart', pools: ['pool-1', 'pool-gone'], tags: ['gold'] }),
      );
      expect(tasks.map((task) => task.subject)).toEqual(['sim-vm-3', 'sim-vm-4', 'pool pool-gone']);
      expect(tasks[2]?.failure).toMatchObject({ transient: false });
      expect(tasks[2]?.failure?.message).toContain('unknown pool pool-gone');
      await expect(
        planBackupIncremental(contextOver({ mode: 'smart', pools: ['pool-gone'] })),
      ).rejects.toThrow('unknown pool pool-gone');
    });

    it('a pool that does not answer: the others are planned, and its failure is a failed task naming it', async () => {
      simB.setFaults({ unreachable: true });
      try {
        const tasks = await planBackupIncremental(contextOver({ mode: 'smart', pools: '*', tags: ['gold'] }));
        expect(tasks.map((task) => task.subject)).toEqual(['sim-vm-3', 'sim-vm-4', 'pool lab-b']);
        expect(tasks[2]?.failure?.transient).toBe(true);
        expect(tasks[2]?.failure?.message).toContain('pool "lab-b" did not answer');
        expect(tasks[2]?.failure?.message).toContain(simB.url);
        // Explicit mode: a listed VM not found says which pool may hold it.
        const explicit = await planBackupIncremental(
          contextOver({ mode: 'explicit', vms: [uuidsB['sim-vm-0'], uuids['sim-vm-0']] }),
        );
        expect(explicit[0]?.failure?.message).toContain('"lab-b"');
        expect(explicit[0]?.failure?.transient).toBe(true);
        expect(explicit[1]).toMatchObject({ subject: 'sim-vm-0', input: { poolId: 'pool-1' } });
        // When no pool answers, planning fails as something a retry may fix.
        const none = await planBackupIncremental(contextOver({ mode: 'smart', pools: ['pool-2'] })).catch(
          (error: unknown) => error,
        );
        expect(none).toBeInstanceOf(PlanUnavailableError);
        expect((none as Error).message).toContain('pool "lab-b" did not answer');
      } finally {
        simB.setFaults({ unreachable: false });
      }
    });
  });
});
