import { join } from 'node:path';
import { mkdirSync, readFileSync } from 'node:fs';
import { loadConfig } from '@haven/config';
import { exitOnBootFailure, sizeThreadPoolForDataPath } from '@haven/service-core';
import { startXapiSimulator } from '@haven/xapi-sim';
import { startAllInOne } from './haven.app';

/** A step of the tour that did not do what it shows (a failed run, a restore that differs). */
class DemoTourFailure extends Error {
  override readonly name = 'DemoTourFailure';
}

/** Set once the app and simulator run: a failed tour closes them before exiting. */
let stopDemo: (() => Promise<void>) | undefined;

/**
 * `npm run demo`: Haven on embedded defaults (PGlite catalog, in-process bus) next to the XAPI
 * simulator; creates a tenant with its admin key and a pool pointing at the simulator, prints where
 * everything is, and serves until Ctrl-C (`--exit` stops after the tour). A tour step that fails
 * (a backup or restore run that does not succeed, a restored disk that differs) stops the demo
 * with exit code 1 and says which. HAVEN_DEMO_DISK_MIB sizes the simulated disks (default 256).
 */
async function demo(): Promise<void> {
  const exitAfterTour = process.argv.includes('--exit');
  const config = loadConfig({
    ...process.env,
    HAVEN_DATA: process.env['HAVEN_DATA'] ?? './data/demo',
    LOG_LEVEL: process.env['LOG_LEVEL'] ?? 'warn',
  });
  const simulatorPassword = 'haven-demo';
  const simulator = await startXapiSimulator({
    port: 0,
    host: '127.0.0.1',
    stateDir: join(config.dataDir, 'xapi-sim'),
    vms: 2,
    diskSize: demoDiskMiB() * 1024 * 1024,
    seed: 'haven-demo',
    user: 'root',
    password: simulatorPassword,
  });
  const app = await startAllInOne(config).catch(async (error: unknown) => {
    await simulator.close();
    throw error;
  });
  const stop = async () => {
    await app.close();
    await simulator.close();
  };
  stopDemo = stop;
  const url = (await app.getUrl()).replace('[::1]', 'localhost');
  const adminKey = readFileSync(join(config.dataDir, 'admin-key'), 'utf8').trim();

  const call = async <T>(method: string, path: string, key: string, body?: unknown): Promise<T> => {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const payload = (await response.json()) as T;
    if (!response.ok) throw new Error(`${method} ${path} failed: ${JSON.stringify(payload)}`);
    return payload;
  };

  const tenants = await call<{ items: { id: string; name: string }[] }>('GET', '/api/v1/tenants', adminKey);
  let tenant = tenants.items.find((t) => t.name === 'demo');
  tenant ??= await call<{ id: string; name: string }>('POST', '/api/v1/tenants', adminKey, { name: 'demo' });
  const key = await call<{ key: string }>('POST', '/api/v1/api-keys', adminKey, {
    name: `demo admin ${new Date().toISOString()}`,
    role: 'admin',
    tenantId: tenant.id,
  });
  const pools = await call<{ items: { id: string; name: string }[] }>('GET', '/api/v1/pools', key.key);
  for (const stale of pools.items.filter((p) => p.name === 'simulator'))
    await fetch(`${url}/api/v1/pools/${stale.id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${key.key}` },
    });
  const pool = await call<{ id: string }>('POST', '/api/v1/pools', key.key, {
    name: 'simulator',
    url: simulator.url,
    username: 'root',
    password: simulatorPassword,
  });

  // The tour: a local remote (an encrypted repository), an incremental job over the simulator's
  // VMs, a first (full) backup, a write into one VM's disk, a second (incremental) backup.
  const remoteFolder = join(config.dataDir, 'remote');
  // A local remote's folder must exist (Haven never creates it: docs/remotes.md).
  mkdirSync(remoteFolder, { recursive: true });
  const remotes = await call<{ items: { id: string; name: string }[] }>('GET', '/api/v1/remotes', key.key);
  const remote =
    remotes.items.find((r) => r.name === 'local') ??
    (await call<{ id: string }>('POST', '/api/v1/remotes', key.key, {
      name: 'local',
      type: 'local',
      settings: { path: remoteFolder },
      encryption: { passphrase: 'haven demo passphrase' },
    }));
  const vms = simulator.listVms().filter((vm) => !vm.isTemplate && !vm.isSnapshot);
  const jobs = await call<{ items: { id: string; name: string }[] }>('GET', '/api/v1/jobs', key.key);
  for (const stale of jobs.items.filter((j) => j.name === 'demo incremental'))
    await fetch(`${url}/api/v1/jobs/${stale.id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${key.key}` },
    });
  const job = await call<{ id: string }>('POST', '/api/v1/jobs', key.key, {
    name: 'demo incremental',
    type: 'backup.incremental',
    selection: { poolId: pool.id, mode: 'explicit', vms: vms.map((vm) => vm.uuid) },
    remoteIds: [remote.id],
    settings: { compression: 'zstd' },
  });

  interface RunView {
    status: string;
    error: string | null;
    tasks: {
      subject: string;
      status: string;
      error: string | null;
      result: { disks?: { key: string; mode: string; reason: string; bytes?: number }[] } | null;
    }[];
  }
  /** Runs the job once and waits for it; the run's id. */
  const runJob = async (label: string): Promise<string> => {
    const started = await call<{ runId: string }>('POST', `/api/v1/jobs/${job.id}/run`, key.key);
    let run: RunView;
    for (;;) {
      run = await call<RunView>('GET', `/api/v1/runs/${started.runId}`, key.key);
      if (['success', 'partial', 'failure', 'cancelled'].includes(run.status)) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    process.stdout.write(
      `\n${label}: run ${started.runId} ${run.status}${run.error ? ` (${run.error})` : ''}\n`,
    );
    for (const task of run.tasks) {
      const disks = (task.result?.disks ?? [])
        .map(
          (d) =>
            `disk ${d.key} ${d.mode} (${d.reason}), ${((d.bytes ?? 0) / (1024 * 1024)).toFixed(0)} MiB read`,
        )
        .join(', ');
      process.stdout.write(
        `  ${task.subject}: ${task.status}${task.error ? ` - ${task.error}` : ''}${disks ? ` - ${disks}` : ''}\n`,
      );
    }
    if (run.status !== 'success')
      throw new DemoTourFailure(
        `${label} ended ${run.status}: ${
          run.tasks
            .filter((task) => task.status !== 'success')
            .map((task) => `${task.subject}: ${task.error ?? task.status}`)
            .join('; ') ||
          run.error ||
          'no reason given'
        }`,
      );
    return started.runId;
  };

  await runJob('First backup');
  const written = vms[0] ? await simulator.writeRandom(vms[0].uuid, { blocks: 4 }) : undefined;
  if (vms[0] && written) process.stdout.write(`\nWrote 4 random 2 MiB blocks into ${vms[0].name}'s disk.\n`);
  // What the disks hold at the second backup: the restore below must give exactly this back.
  const expected = await Promise.all(
    (vms[0]?.disks ?? []).map(
      async (_disk, position) => (await simulator.diskHash(vms[0]?.uuid ?? '', {}, position)).sha256,
    ),
  );
  const secondRunId = await runJob('Second backup');
  const points = await call<{
    items: {
      id: string;
      vmUuid: string;
      vmName: string;
      runId: string | null;
      kind: string;
      logicalBytes: number;
      storedBytes: number;
      takenAt: string;
    }[];
  }>('GET', `/api/v1/restore-points?jobId=${job.id}`, key.key);
  const MiB = 1024 * 1024;
  process.stdout.write('\nRestore points (newest first):\n');
  for (const point of points.items)
    process.stdout.write(
      `  ${point.takenAt}  ${point.vmName.padEnd(16)} ${point.kind.padEnd(12)} ${(point.logicalBytes / MiB).toFixed(0).padStart(6)} MiB of disk, ${(point.storedBytes / MiB).toFixed(1).padStart(7)} MiB newly stored\n`,
    );
  const logical = points.items.reduce((sum, p) => sum + p.logicalBytes, 0);
  const stored = points.items.reduce((sum, p) => sum + p.storedBytes, 0);
  if (stored > 0)
    process.stdout.write(
      `  every restore point is a full index: ${(logical / MiB).toFixed(0)} MiB of disks kept in ${(stored / MiB).toFixed(1)} MiB (${(logical / stored).toFixed(1)}x)\n`,
    );

  // Restore the first VM's restore point of the second backup as a new VM, then compare every disk.
  const latest = points.items.find((p) => p.vmUuid === vms[0]?.uuid && p.runId === secondRunId);
  if (!latest || !vms[0])
    throw new DemoTourFailure('the second backup left no restore point of the first VM');
  const restore = await call<{ runId: string }>(
    'POST',
    `/api/v1/restore-points/${latest.id}/restore`,
    key.key,
    {
      poolId: pool.id,
      name: `${vms[0].name} (demo restore)`,
    },
  );
  let run: {
    status: string;
    error: string | null;
    tasks: { result: { vmUuid?: string } | null; error: string | null }[];
  };
  for (;;) {
    run = await call('GET', `/api/v1/runs/${restore.runId}`, key.key);
    if (['success', 'partial', 'failure', 'cancelled'].includes(run.status)) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const restoredUuid = run.tasks[0]?.result?.vmUuid;
  if (run.status !== 'success' || restoredUuid === undefined) {
    throw new DemoTourFailure(
      `the restore (run ${restore.runId}) ended ${run.status}: ${run.tasks[0]?.error ?? run.error ?? 'no result'}`,
    );
  }
  const restored = await Promise.all(
    expected.map(async (_hash, position) => (await simulator.diskHash(restoredUuid, {}, position)).sha256),
  );
  const identical = restored.length === expected.length && restored.every((hash, i) => hash === expected[i]);
  process.stdout.write(
    `\nRestore: ${vms[0].name} restored as "${vms[0].name} (demo restore)" (${restoredUuid}); its ${restored.length} disk(s) ${identical ? 'are byte-identical to' : 'DIFFER from'} the VM at the second backup\n`,
  );
  if (!identical)
    throw new DemoTourFailure(
      `the restored VM ${restoredUuid} differs from ${vms[0].name} at the second backup`,
    );

  process.stdout.write(
    [
      '',
      'Haven demo is running (embedded catalog and bus, XAPI simulator).',
      `  API:            ${url}/api/v1   (OpenAPI UI: ${url}/api/docs)`,
      `  Health:         ${url}/health   Metrics: ${url}/metrics`,
      `  XAPI simulator: ${simulator.url}`,
      `  Tenant "demo":  ${tenant.id}`,
      `  Tenant key:     ${key.key}`,
      '',
      `  Try: HAVEN_URL=${url} HAVEN_KEY=${key.key} ./bin/haven.js jobs run ${job.id} --follow`,
      '',
      exitAfterTour ? 'Stopping (--exit).' : 'Serving until Ctrl-C.',
      '',
    ].join('\n'),
  );
  if (exitAfterTour) {
    await stop();
    return;
  }
  process.once('SIGINT', () => void stop().then(() => process.exit(0)));
}

function demoDiskMiB(): number {
  const raw = process.env['HAVEN_DEMO_DISK_MIB'] ?? '256';
  const mib = Number(raw);
  if (!Number.isSafeInteger(mib) || mib < 8 || mib > 65536)
    throw new Error(`HAVEN_DEMO_DISK_MIB=${raw} must be a whole number of MiB from 8 to 65536`);
  return mib;
}

// The tour backs up and restores in this process: size libuv's pool before any asynchronous call.
sizeThreadPoolForDataPath();
demo().catch(async (error: unknown) => {
  if (!(error instanceof DemoTourFailure) && stopDemo === undefined) exitOnBootFailure(error);
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`\nDemo tour FAILED: ${message}\n`);
  await stopDemo?.().catch(() => undefined);
  process.exit(1);
});
