import type request from 'supertest';
import { DataSource } from 'typeorm';
import { XapiPool } from '@haven/xapi';
import type { VmSummary, XapiSimulator } from '@haven/xapi-sim';
import { type BackupLab, type RunBody, startBackupLab } from '../../../../apps/haven/src/backup-lab.fixture';

const MiB = 1024 * 1024;
const JOB_TYPES = ['backup.incremental', 'backup.full'] as const;

interface TimedTask {
  subject: string;
  status: string;
  startedAt: string | null;
  finishedAt: string | null;
}

type TimedRun = Omit<RunBody, 'tasks'> & { tasks: (RunBody['tasks'][number] & TimedTask)[] };

/** The most tasks whose [startedAt, finishedAt] overlap at one instant (an end before a start at the same ms). */
function mostAtOnce(tasks: readonly TimedTask[]): number {
  const edges = tasks.flatMap((task) => {
    if (task.startedAt === null || task.finishedAt === null)
      throw new Error(`task ${task.subject} never ran`);
    return [
      { at: Date.parse(task.startedAt), delta: 1 },
      { at: Date.parse(task.finishedAt), delta: -1 },
    ];
  });
  edges.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let running = 0;
  let most = 0;
  for (const edge of edges) {
    running += edge.delta;
    most = Math.max(most, running);
  }
  return most;
}

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// The settings both VM backup job types share, through the gateway of the all-in-one app against
// the XAPI simulator with three VMs: the per-VM timeout, the snapshot name template, and the number
// of VMs of a run backed up at once.
describe('VM backup job settings: timeout, snapshot name, VM concurrency', () => {
  let lab: BackupLab;
  let simulator: XapiSimulator;
  let xapi: XapiPool;
  let vms: VmSummary[] = [];
  let jobCount = 0;
  const api = () => lab.api();
  const auth = (req: request.Test) => lab.auth(req);

  const createJob = async (
    type: string,
    vmUuids: string[],
    settings: Record<string, unknown>,
  ): Promise<{ id: string; name: string }> => {
    const name = `settings job ${++jobCount}`;
    const created = await auth(api().post('/api/v1/jobs'))
      .send({
        name,
        type,
        selection: { poolId: lab.poolId, mode: 'explicit', vms: vmUuids },
        remoteIds: [lab.remoteId],
        settings,
      })
      .expect(201);
    return { id: created.body.id as string, name };
  };
  const runJob = async (jobId: string): Promise<TimedRun> => {
    const started = await auth(api().post(`/api/v1/jobs/${jobId}/run`))
      .send({})
      .expect(202);
    return (await lab.waitForRun(started.body.runId as string)) as TimedRun;
  };
  const restorePointCount = async (jobId: string): Promise<number> => {
    const rows: { count: string }[] = await lab.app
      .get(DataSource)
      .query('SELECT count(*) AS count FROM restore_points WHERE job_id = $1', [jobId]);
    return Number(rows[0]?.count);
  };
  const jobSnapshots = (vmUuid: string, jobId: string) =>
    xapi.listSnapshots(vmUuid, { otherConfig: { 'haven:job': jobId } });
  /** Runs `body` with every export and import of the simulator capped to `bytesPerSecond`. */
  const throttled = async <T>(bytesPerSecond: number, body: () => Promise<T>): Promise<T> => {
    simulator.setFaults({ bandwidthBytesPerSecond: bytesPerSecond });
    try {
      return await body();
    } finally {
      simulator.setFaults({ bandwidthBytesPerSecond: null });
    }
  };

  beforeAll(async () => {
    lab = await startBackupLab({
      seed: 'vm-job-settings',
      passphrase: 'settings lab passphrase',
      diskSize: 8 * MiB,
      vms: 3,
      plugins: ['@haven/remote-local', '@haven/job-backup-incremental', '@haven/job-backup-full'],
    });
    simulator = lab.simulator;
    xapi = await XapiPool.connect({ url: simulator.url, username: 'root', password: 'pw' });
    vms = simulator.listVms().filter((vm) => !vm.isTemplate && !vm.isSnapshot);
    expect(vms).toHaveLength(3);
  }, 120_000);

  afterAll(async () => {
    await (xapi as XapiPool | undefined)?.close();
    await (lab as BackupLab | undefined)?.close();
  });

  it.each(JOB_TYPES)(
    '%s: refuses a timeout that is not a whole number of seconds ≥ 1 and an unknown snapshot name placeholder, naming each',
    async (type) => {
      for (const vmTimeoutSeconds of [0, -30, 2.5]) {
        const refused = await auth(api().post('/api/v1/jobs'))
          .send({
            name: 'bad settings',
            type,
            selection: { poolId: lab.poolId, mode: 'explicit', vms: [vms[0].uuid] },
            remoteIds: [lab.remoteId],
            settings: { vmTimeoutSeconds },
          })
          .expect(400);
        expect(JSON.stringify(refused.body)).toContain('settings.vmTimeoutSeconds');
      }
      const refused = await auth(api().post('/api/v1/jobs'))
        .send({
          name: 'bad template',
          type,
          selection: { poolId: lab.poolId, mode: 'explicit', vms: [vms[0].uuid] },
          remoteIds: [lab.remoteId],
          settings: { snapshotNameTemplate: '{vm} on {host}' },
        })
        .expect(400);
      const text = JSON.stringify(refused.body);
      expect(text).toContain('settings.snapshotNameTemplate');
      expect(text).toContain('{host}');
      // The same check when a job's settings are changed.
      const job = await createJob(type, [vms[0].uuid], { vmTimeoutSeconds: 3600 });
      const patched = await auth(api().patch(`/api/v1/jobs/${job.id}`))
        .send({ settings: { snapshotNameTemplate: '{vmname}' } })
        .expect(400);
      expect(JSON.stringify(patched.body)).toContain('{vmname}');
      await auth(api().delete(`/api/v1/jobs/${job.id}`)).expect(204);
    },
  );

  it("names the snapshot it keeps with the job's template", async () => {
    const vm = vms[1];
    const job = await createJob('backup.incremental', [vm.uuid], {
      snapshotNameTemplate: 'kept by {job} for {vm} at {date}',
    });
    const run = await runJob(job.id);
    expect(run.status).toBe('success');
    const snapshots = await jobSnapshots(vm.uuid, job.id);
    expect(snapshots).toHaveLength(1);
    expect(snapshots[0].name).toMatch(
      new RegExp(
        `^kept by ${escapeRegExp(job.name)} for ${escapeRegExp(vm.name)} at \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$`,
      ),
    );
  }, 120_000);

  it.each(JOB_TYPES)(
    '%s: stops a VM past vmTimeoutSeconds: the task fails naming the timeout, not retried, no snapshot or restore point left',
    async (type) => {
      const vm = vms[2];
      const job = await createJob(type, [vm.uuid], {
        vmTimeoutSeconds: 1,
        retries: 2,
        ...(type === 'backup.full' ? { compression: 'none' } : {}),
      });
      // The VM's export crawls: it cannot end before the timeout.
      const run = await throttled(64 * 1024, () => runJob(job.id));
      expect(run.status).toBe('failure');
      expect(run.tasks).toHaveLength(1);
      expect(run.tasks[0].error).toContain('timeout of 1 s (settings.vmTimeoutSeconds)');
      expect(run.tasks[0].attempts).toBe(1);
      expect(await jobSnapshots(vm.uuid, job.id)).toEqual([]);
      expect(await restorePointCount(job.id)).toBe(0);
      expect(await xapi.readVmMarker(vm.uuid, 'backup')).toBeUndefined();
    },
    120_000,
  );

  it.each(JOB_TYPES.flatMap((type) => [1, 2].map((vmConcurrency) => [type, vmConcurrency] as const)))(
    '%s with vmConcurrency %i backs up that many of its 3 VMs at once, no more',
    async (type, vmConcurrency) => {
      const job = await createJob(
        type,
        vms.map((vm) => vm.uuid),
        { vmConcurrency, ...(type === 'backup.full' ? { compression: 'none' } : {}) },
      );
      // Exports slow enough that a VM's task is still running when the next one may start.
      const run = await throttled(4 * MiB, () => runJob(job.id));
      expect(run.status).toBe('success');
      expect(run.tasks.map((task) => task.status)).toEqual(['success', 'success', 'success']);
      expect(mostAtOnce(run.tasks)).toBe(vmConcurrency);
    },
    180_000,
  );
});
