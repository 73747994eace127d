import type { JobDefinition, JobPlanContext, JobResources } from '@haven/plugin-sdk';
import { scratchDir } from '@haven/testing';
import { XapiPool } from '@haven/xapi';
import { startXapiSimulator, type XapiSimulator } from '@haven/xapi-sim';
import { BACKUP_INCREMENTAL_TASK, planBackupIncremental } from './backup-incremental.plugin';
import { globMatcher } from './vm.selection';

// Smart-mode selection rules against the simulated pool (6 VMs: even ones Running + "production",
// odd ones Halted + "test").
describe('backup.incremental planning', () => {
  let sim: XapiSimulator;
  let state: { path: string; cleanup: () => Promise<void> };
  let pool: XapiPool;
  const uuids: Record<string, string> = {};

  beforeAll(async () => {
    state = await scratchDir('haven-plan-sim-');
    sim = await startXapiSimulator({ stateDir: state.path, vms: 6, diskSize: 4 * 1024 * 1024, seed: 'plan' });
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
    await state.cleanup();
  });

  function context(selection: Record<string, unknown>): JobPlanContext {
    const job: JobDefinition = {
      id: 'job-1',
      tenantId: 'tenant-1',
      name: 'nightly',
      type: 'backup.incremental',
      selection: { poolId: 'pool-1', ...selection },
      remoteIds: ['remote-1'],
      settings: {},
    };
    const resources: JobResources = {
      pool: (id) => {
        if (id !== 'pool-1') return Promise.reject(new Error(`unknown pool ${id}`));
        return Promise.resolve({
          id,
          name: 'sim',
          url: sim.url,
          username: sim.user,
          password: sim.password,
          allowUnauthorized: false,
        });
      },
      remote: (id) => Promise.reject(new Error(`planning must not open remote ${id}`)),
    };
    return { job, runId: 'run-1', trigger: 'manual', signal: new AbortController().signal, resources };
  }

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
        input: { vm: uuids['sim-vm-1'], vmName: 'sim-vm-1' },
        lockKey: `vm:${uuids['sim-vm-1'] ?? ''}`,
      },
      {
        type: BACKUP_INCREMENTAL_TASK,
        subject: 'sim-vm-4',
        input: { vm: uuids['sim-vm-4'], vmName: 'sim-vm-4' },
        lockKey: `vm:${uuids['sim-vm-4'] ?? ''}`,
      },
    ]);
  });

  it('globs match whole names, with regex characters taken literally', () => {
    expect(globMatcher('web.*')('web.1')).toBe(true);
    expect(globMatcher('web.*')('webx1')).toBe(false);
    expect(globMatcher('db?')('db12')).toBe(false);
  });
});
