import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { loadConfig } from '@haven/config';
import { scratchDir, simulatorLabAppEnv } from '@haven/testing';
import { startXapiSimulator, type VmSummary, type XapiSimulator } from '@haven/xapi-sim';
import { startAllInOne } from './haven.app';

const MiB = 1024 * 1024;

export interface RunBody {
  id: string;
  status: string;
  kind: string;
  error: string | null;
  tasks: { result: unknown; error: string | null; attempts: number }[];
}

/**
 * The all-in-one app on embedded defaults next to an XAPI simulator with one VM, set up through
 * the API as an operator would: a pool, an encrypted local remote, an incremental job over the VM.
 * For end-to-end suites about what comes after a backup (downloads, sync, retention, restore).
 */
export interface BackupLab {
  app: INestApplication;
  simulator: XapiSimulator;
  baseUrl: string;
  admin: string;
  poolId: string;
  remoteId: string;
  jobId: string;
  vm: VmSummary;
  api(): ReturnType<typeof request>;
  /** Authenticates a request with the admin key, or with `key`. */
  auth(req: request.Test, key?: string): request.Test;
  /** Polls a run until it ends. */
  waitForRun(runId: string): Promise<RunBody>;
  /** Runs the job now (with an optional body such as a scheduleId) and waits for its end. */
  runJob(body?: Record<string, unknown>): Promise<RunBody>;
  /** A scratch folder removed by close(). */
  scratch(prefix: string): Promise<string>;
  close(): Promise<void>;
}

export interface BackupLabOptions {
  seed: string;
  passphrase: string;
  /** Size of each disk of the VM (default 24 MiB). */
  diskSize?: number;
  /** VMs on the simulator (default 1); the lab's own job backs up the first. */
  vms?: number;
  /** Plugins the app loads (default: the local remote and the incremental job). */
  plugins?: readonly string[];
}

export async function startBackupLab(options: BackupLabOptions): Promise<BackupLab> {
  const dirs = await Promise.all([
    scratchDir('haven-lab-data-'),
    scratchDir('haven-lab-remote-'),
    scratchDir('haven-lab-sim-'),
  ]);
  const simulator = await startXapiSimulator({
    stateDir: dirs[2].path,
    vms: options.vms ?? 1,
    diskSize: options.diskSize ?? 24 * MiB,
    seed: options.seed,
    user: 'root',
    password: 'pw',
  });
  const app = await startAllInOne(
    loadConfig(
      simulatorLabAppEnv(
        dirs[0].path,
        options.plugins ?? ['@haven/remote-local', '@haven/job-backup-incremental'],
      ),
    ),
  );
  const baseUrl = await app.getUrl();
  const admin = readFileSync(join(dirs[0].path, 'admin-key'), 'utf8').trim();
  const api = () => request(baseUrl);
  const auth = (req: request.Test, key = admin) => req.set('authorization', `Bearer ${key}`);

  const pool = await auth(api().post('/api/v1/pools'))
    .send({ name: 'sim', url: simulator.url, username: 'root', password: 'pw' })
    .expect(201);
  const remote = await auth(api().post('/api/v1/remotes'))
    .send({
      name: 'nas',
      type: 'local',
      settings: { path: dirs[1].path },
      encryption: { passphrase: options.passphrase },
    })
    .expect(201);
  const vm = simulator.listVms().find((v) => !v.isTemplate && !v.isSnapshot);
  if (!vm) throw new Error('the simulator has no VM');
  const job = await auth(api().post('/api/v1/jobs'))
    .send({
      name: 'nightly',
      type: 'backup.incremental',
      selection: { poolId: pool.body.id, mode: 'explicit', vms: [vm.uuid] },
      remoteIds: [remote.body.id],
    })
    .expect(201);

  const waitForRun = async (runId: string): Promise<RunBody> => {
    for (;;) {
      const run = await auth(api().get(`/api/v1/runs/${runId}`)).expect(200);
      if (run.body.status !== 'running' && run.body.status !== 'pending') return run.body as RunBody;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };
  return {
    app,
    simulator,
    baseUrl,
    admin,
    poolId: pool.body.id as string,
    remoteId: remote.body.id as string,
    jobId: job.body.id as string,
    vm,
    api,
    auth,
    waitForRun,
    runJob: async (body = {}) => {
      const started = await auth(api().post(`/api/v1/jobs/${job.body.id}/run`))
        .send(body)
        .expect(202);
      return waitForRun(started.body.runId as string);
    },
    scratch: async (prefix) => {
      const dir = await scratchDir(prefix);
      dirs.push(dir);
      return dir.path;
    },
    close: async () => {
      await app.close();
      await simulator.close();
      for (const dir of dirs) await dir.cleanup();
    },
  };
}
