import { buildCli } from '../../cli/src/haven.cli';
import { GatewayClient } from '../../cli/src/gateway.client';
import { type BackupLab, startBackupLab } from './backup-lab.fixture';

const MiB = 1024 * 1024;

interface DiskFigures {
  key: string;
  bytesDone: number;
  bytesTotal?: number;
  bytesPerSecond?: number;
  etaSeconds?: number;
}

interface TaskFigures {
  bytesDone?: number;
  bytesTotal?: number;
  bytesPerSecond?: number;
  etaSeconds?: number;
  vm?: { uuid: string; name: string };
  disks?: DiskFigures[];
}

interface RunView {
  status: string;
  transfer: {
    tasksCounted: number;
    bytesDone: number;
    bytesTotal?: number;
    bytesPerSecond?: number;
    etaSeconds?: number;
  };
  tasks: { status: string; progress: TaskFigures }[];
}

/** Each disk's bytesDone, in the order seen, over a run's snapshots. */
function diskSeries(snapshots: TaskFigures[]): Map<string, number[]> {
  const series = new Map<string, number[]>();
  for (const progress of snapshots)
    for (const disk of progress.disks ?? [])
      series.set(disk.key, [...(series.get(disk.key) ?? []), disk.bytesDone]);
  return series;
}

describe('backup progress per run, VM and disk (bytes, rate, ETA) through the gateway and the CLI', () => {
  let lab: BackupLab;

  beforeAll(async () => {
    lab = await startBackupLab({
      seed: 'run-progress',
      passphrase: 'progress passphrase',
      diskSize: 32 * MiB,
      plugins: ['@haven/remote-local', '@haven/job-backup-incremental', '@haven/job-backup-full'],
    });
    // Slow enough that several progress events go out while each disk moves (the worker sends at
    // most two a second): the figures are what is checked, never how long anything took.
    lab.simulator.setNbdEnabled(false);
    lab.simulator.setFaults({ bandwidthBytesPerSecond: 4 * MiB });
  }, 120_000);

  afterAll(async () => {
    lab.simulator.setFaults({ bandwidthBytesPerSecond: null });
    await lab.close();
  });

  /** A job of its own over the lab's VM (its first run moves every disk's bytes); its id. */
  async function createJob(name: string, type: string, settings?: Record<string, unknown>): Promise<string> {
    const job = await lab
      .auth(lab.api().post('/api/v1/jobs'))
      .send({
        name,
        type,
        selection: { poolId: lab.poolId, mode: 'explicit', vms: [lab.vm.uuid] },
        remoteIds: [lab.remoteId],
        ...(settings === undefined ? {} : { settings }),
      })
      .expect(201);
    return job.body.id as string;
  }

  it('GET /runs/:id and the SSE stream show per-disk bytes rising, a rate and an ETA, for the VM and the run', async () => {
    const started = await lab
      .auth(lab.api().post(`/api/v1/jobs/${lab.jobId}/run`))
      .send({})
      .expect(202);
    const runId = started.body.runId as string;
    const events: { event: string; data: any }[] = [];
    const following = (async () => {
      for await (const event of new GatewayClient({ url: lab.baseUrl, key: lab.admin }).events(
        `/api/v1/runs/${runId}/events`,
      ))
        events.push(event);
    })();
    const polled: RunView[] = [];
    for (;;) {
      const run = (await lab.auth(lab.api().get(`/api/v1/runs/${runId}`)).expect(200)).body as RunView;
      polled.push(run);
      if (run.status !== 'running' && run.status !== 'pending') break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    await following;
    expect(polled.at(-1)?.status).toBe('success');

    // The API: while running, the VM's task carries each disk, and the disks' bytes only grow.
    const running = polled
      .filter((run) => run.tasks.at(0)?.status === 'running')
      .map((run) => run.tasks[0].progress);
    const moving = running.filter((progress) => (progress.disks ?? []).length > 0);
    expect(moving.length).toBeGreaterThan(1);
    expect(moving[0]?.vm).toEqual({ uuid: lab.vm.uuid, name: lab.vm.name });
    const series = diskSeries(moving);
    expect([...series.keys()].length).toBe(lab.vm.disks.length);
    for (const done of series.values()) expect(done).toEqual([...done].sort((a, b) => a - b));
    expect([...series.values()].some((done) => new Set(done).size > 1)).toBe(true);
    expect(moving.some((p) => (p.bytesPerSecond ?? 0) > 0 && (p.etaSeconds ?? -1) >= 0)).toBe(true);
    expect(
      moving.some((p) => p.disks!.some((d) => (d.bytesPerSecond ?? 0) > 0 && d.etaSeconds !== undefined)),
    ).toBe(true);
    // The run's view sums its task: bytes of a known total, a rate and an ETA while it runs.
    expect(
      polled.some(
        (run) =>
          run.status === 'running' &&
          run.transfer.bytesTotal === lab.vm.disks.length * 32 * MiB &&
          (run.transfer.bytesPerSecond ?? 0) > 0 &&
          run.transfer.etaSeconds !== undefined,
      ),
    ).toBe(true);
    // Existing fields stay as they were: the task count in progress, the VM's bytes done and total.
    const last = polled.at(-1)!;
    expect(last).toMatchObject({ progress: { tasks: 1, succeeded: 1, failed: 0 } });
    expect(last.tasks[0]?.progress).toMatchObject({
      bytesDone: last.transfer.bytesDone,
      bytesTotal: last.transfer.bytesDone,
    });
    expect(last.transfer).toMatchObject({ tasksCounted: 1, etaSeconds: 0 });

    // The stream: task progress events with the disks, and the run's transfer events with rate and ETA.
    const streamed = events
      .filter((e) => e.event === 'progress' && e.data.taskId !== undefined)
      .map((e) => e.data);
    expect(
      streamed.some((p) => p.status === 'running' && (p.progress.disks ?? []).length === lab.vm.disks.length),
    ).toBe(true);
    const transfers = events.filter((e) => e.event === 'transfer').map((e) => e.data);
    expect(transfers.every((t) => t.runId === runId)).toBe(true);
    expect(
      transfers.some((t) => t.bytesPerSecond > 0 && t.etaSeconds !== undefined && t.bytesTotal > 0),
    ).toBe(true);
    const runDone = transfers.map((t) => t.bytesDone as number);
    expect(runDone).toEqual([...runDone].sort((a, b) => a - b));
  }, 180_000);

  it('`haven jobs run ID --follow` prints the VM with its MiB/s and ETA while the backup runs', async () => {
    // A job of its own, so its first run is a full one that moves every disk's bytes again.
    const jobId = await createJob('followed', 'backup.incremental');
    const lines: string[] = [];
    await buildCli((text) => lines.push(text), { HAVEN_URL: lab.baseUrl, HAVEN_KEY: lab.admin })
      .exitOverride()
      .parseAsync(['node', 'haven', 'jobs', 'run', jobId, '--follow']);
    const runId = /^Run (\S+) started with 1 task\(s\)$/.exec(lines[0] ?? '')?.[1];
    expect(runId).toBeDefined();
    expect(lines.at(-1)).toBe(`Run ${runId}: success`);
    const vmLines = lines.filter((line) => line.startsWith(lab.vm.name));
    expect(
      vmLines.some((line) => /running +\[[#.]+\] +\d+%.* of .*\d+\.\d MiB\/s +ETA \d+:\d\d/.test(line)),
    ).toBe(true);
    expect(vmLines.at(-1)).toMatch(/success +\[#+\] 100%/);
  }, 180_000);

  it('backup.full reports a total while it exports, so its VM gets a bar, a rate and an ETA', async () => {
    const jobId = await createJob('archived', 'backup.full', { compression: 'none' });
    const started = await lab
      .auth(lab.api().post(`/api/v1/jobs/${jobId}/run`))
      .send({})
      .expect(202);
    const exporting: TaskFigures[] = [];
    for (;;) {
      const run = (await lab.auth(lab.api().get(`/api/v1/runs/${started.body.runId}`)).expect(200))
        .body as RunView;
      const task = run.tasks.at(0);
      if (task?.status === 'running' && (task.progress as { step?: string }).step === 'exporting')
        exporting.push(task.progress);
      if (run.status !== 'running' && run.status !== 'pending') {
        expect(run.status).toBe('success');
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(exporting.length).toBeGreaterThan(0);
    expect(exporting[0]?.vm).toEqual({ uuid: lab.vm.uuid, name: lab.vm.name });
    for (const progress of exporting) {
      expect(progress.bytesTotal).toBeGreaterThan(0);
      expect(progress.bytesDone).toBeLessThanOrEqual(progress.bytesTotal!);
    }
    expect(exporting.some((p) => (p.bytesPerSecond ?? 0) > 0 && p.etaSeconds !== undefined)).toBe(true);
  }, 180_000);
});
