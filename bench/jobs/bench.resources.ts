import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import localRemote from '@haven/remote-local';
import { backupVmIncremental, type VmBackupResult } from '@haven/job-backup-incremental';
import type { JobDefinition, PoolAccess, RemoteAccess, TaskExecutionContext } from '@haven/plugin-sdk';

/**
 * The simulator's pool as a job resource (its default root credentials). `eventDebounceMs` as
 * HAVEN_XAPI_EVENT_DEBOUNCE_MS would set it; by default the client's own 200 ms, as in production.
 */
export function simPool(url: string, eventDebounceMs?: number): (id: string) => Promise<PoolAccess> {
  return (id) =>
    Promise.resolve({
      id,
      name: 'sim',
      url,
      username: 'root',
      password: 'password',
      allowUnauthorized: false,
      ...(eventDebounceMs !== undefined ? { eventDebounceMs } : {}),
    });
}

/** Local remotes in folders under `root`, named by id; `passphrase` makes a remote's repository encrypted. */
export function localRemotes(
  root: string,
  passphrase: (id: string) => string | undefined = () => undefined,
): (id: string) => Promise<RemoteAccess> {
  return async (id) => {
    const key = passphrase(id);
    // A local remote's folder must exist (Haven never creates it).
    await mkdir(join(root, id), { recursive: true });
    return {
      id,
      name: id,
      type: 'local',
      store: await localRemote.create({ path: join(root, id) }, { name: id }),
      ...(key === undefined ? {} : { repositoryPassphrase: key }),
    };
  };
}

/** A backup.incremental job of one VM of the simulator's pool ('sim'), tenant 'bench'. */
export function benchJob(
  id: string,
  vmUuid: string,
  remoteIds: string[],
  settings: Record<string, unknown>,
  name = 'bench',
): JobDefinition {
  return {
    id,
    tenantId: 'bench',
    name,
    type: 'backup.incremental',
    selection: { poolId: 'sim', mode: 'explicit', vms: [vmUuid] },
    remoteIds,
    settings,
  };
}

/** One VM task of `job`, run in this process as a transfer worker runs it. */
export function backupOneVm(
  job: JobDefinition,
  vm: { uuid: string; name: string },
  taskId: string,
  context: TaskExecutionContext,
): Promise<VmBackupResult> {
  return backupVmIncremental(
    {
      taskId,
      runId: taskId,
      tenantId: job.tenantId,
      type: 'backup.incremental.vm',
      subject: vm.name,
      input: { vm: vm.uuid },
      attempt: 1,
      job,
    },
    context,
  );
}

/** How this process was launched, as far as the figures depend on it. */
export function launchedWith(): string {
  const flags = [...process.execArgv, process.env['NODE_OPTIONS'] ?? ''].join(' ').trim();
  return `MALLOC_ARENA_MAX=${process.env['MALLOC_ARENA_MAX'] ?? 'unset'}, node flags: ${flags || 'none'}`;
}

/** Names of the variables the re-run added, so the simulator (a XAPI host, not the worker) runs without them. */
const LAUNCHER_ADDED = 'HAVEN_BENCH_LAUNCHER_ADDED';

/** Runs `start` (e.g. the simulator's launch) without the variables `runAsLaunched`'s re-run added. */
export async function withoutLauncherEnvironment<T>(start: () => Promise<T>): Promise<T> {
  const names = (process.env[LAUNCHER_ADDED] ?? '').split(',').filter((name) => name !== '');
  const kept = new Map(names.map((name) => [name, process.env[name]]));
  // The C library read them when this process started: unsetting them now only affects children.
  for (const name of names) Reflect.deleteProperty(process.env, name);
  try {
    return await start();
  } finally {
    for (const [name, value] of kept) if (value !== undefined) process.env[name] = value;
  }
}

/**
 * The worker measured is the one production runs: with the environment its launchers set at exec
 * (DATA_PATH_EXEC_ENVIRONMENT: Dockerfile, npm start scripts), which a process cannot give itself,
 * so the bench runs itself again with it when it is missing, then `main` runs in that re-run.
 * --no-launcher-env: measure without. @haven/service-core (NestJS) is loaded here, not at import:
 * the benches that import this file only for its other helpers keep their memory figures.
 */
export async function runAsLaunched(main: () => Promise<void>): Promise<void> {
  // A require, not import(): compiled to CommonJS, import() would go through Node's ESM loader,
  // which knows neither the @haven path aliases nor the precompiled runner's tree.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const core = require('@haven/service-core') as typeof import('@haven/service-core');
  const { missingExecEnvironment, missingNodeFlags, rerunWithExecEnvironment } = core;
  const runner = require.main?.filename;
  const missing = Object.keys(missingExecEnvironment());
  const relaunch = missing.length > 0 || missingNodeFlags().length > 0;
  if (runner !== undefined && relaunch && !process.argv.includes('--no-launcher-env')) {
    process.env[LAUNCHER_ADDED] = missing.join(',');
    const code = await rerunWithExecEnvironment(
      [...process.execArgv, runner, ...process.argv.slice(1)],
      (added, flags) =>
        console.log(
          `re-running the bench as the transfer launcher starts a worker: ${[
            ...Object.entries(added).map(([name, value]) => `${name}=${value}`),
            ...flags,
          ].join(' ')}`,
        ),
    );
    if (code !== undefined) {
      process.exitCode = code;
      return;
    }
  }
  await main();
}

/**
 * This script again, in the same runner with the same node flags and environment, with `extra`
 * arguments after its own: resolves to the JSON it printed on a line starting with `marker` (its
 * other output is passed through), and fails naming `label` when it printed none or failed.
 */
export function rerunForResult<T>(extra: readonly string[], marker: string, label: string): Promise<T> {
  const runner = require.main?.filename;
  if (runner === undefined) throw new Error('no runner to start the child with');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, runner, ...process.argv.slice(1), ...extra], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const line = output.split('\n').find((text) => text.startsWith(marker));
      const rest = output
        .split('\n')
        .filter((text) => text !== '' && !text.startsWith(marker))
        .join('\n');
      if (rest !== '') console.log(rest);
      if (code !== 0 || line === undefined)
        reject(new Error(`the ${label} ended with ${code ?? signal} and no result`));
      else resolve(JSON.parse(line.slice(marker.length)) as T);
    });
  });
}
