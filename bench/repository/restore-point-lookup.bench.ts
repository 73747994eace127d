/**
 * What a backup.incremental VM task pays to find its VM's restore points in a repository that many
 * VMs share: `listRestorePoints({ vmUuid })` (called to pick the base, and again by retention),
 * against the baseline of the one listing of restore-points/ any lookup needs, in the same run.
 * On a local remote, and on s3rver behind a proxy that adds a round trip to every request. Each
 * lookup runs twice in a row: the first reads every manifest (what every lookup did before the
 * process remembered restore points' owners), the next only the VM's own.
 *
 *   node bin/run.js bench/repository/restore-point-lookup.bench.ts [--points 2000] [--vms 100] [--rtt-ms 40]
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LocalDriver } from '@haven/remote-local';
import { plugin as s3Plugin } from '@haven/remote-s3';
import { Remote, type RemoteStore } from '@haven/remote-sdk';
import { initRepository, openRepository, RESTORE_POINTS_PREFIX, type Repository } from '@haven/repository';
import { arg, runBench } from '../bench.kit';
import { startDistantS3 } from '../remotes/distant-s3';

const pointCount = arg('points', 2000);
const vmCount = arg('vms', 100);
const roundTripMs = arg('rtt-ms', 40);
const CHUNK = 4096;

/** `pointCount` one-disk restore points, round-robin over `vmCount` VMs of one job. */
async function fill(repository: Repository): Promise<void> {
  for (let index = 0; index < pointCount; index++) {
    const vm = `vm-${index % vmCount}`;
    const writer = await repository.createRestorePointWriter(
      { vm: { uuid: vm, name: vm }, tenant: 'bench', job: { id: 'job', name: 'job' } },
      { knownChunks: 'none' },
    );
    await writer.writeDisk({ key: 'd0', virtualSize: CHUNK }, [{ index: 0, data: randomBytes(CHUNK) }]);
    await writer.commit();
  }
}

async function timed(work: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await work();
  return (performance.now() - start) / 1000;
}

async function measure(label: string, store: RemoteStore): Promise<void> {
  const repository = await openRepository(store);
  const listing = async (): Promise<void> => {
    for await (const object of store.listAll(RESTORE_POINTS_PREFIX)) if (object.size < 0) throw new Error('?');
  };
  for (let round = 1; round <= 2; round++) {
    const baseline = await timed(listing);
    const lookup = await timed(async () => {
      const points = await repository.listRestorePoints({ vmUuid: 'vm-7', tenant: 'bench' });
      if (points.length !== Math.ceil((pointCount - 7) / vmCount))
        throw new Error(`found ${points.length} restore points of vm-7`);
    });
    const when = round === 1 ? 'first lookup (every manifest read)' : 'next lookup (owners remembered)';
    process.stdout.write(
      `${label}, ${when}: listing of restore-points/ (baseline) ${baseline.toFixed(2)} s, ` +
        `one VM's restore points ${lookup.toFixed(2)} s = ${(lookup / baseline).toFixed(1)}x\n`,
    );
  }
}

async function main(): Promise<void> {
  process.stdout.write(`${pointCount} restore points of ${vmCount} VMs in one repository\n`);
  const root = await mkdtemp(join(tmpdir(), 'haven-bench-lookup-'));
  const distant = await startDistantS3(roundTripMs, ['bench']);
  try {
    const local = new Remote(new LocalDriver({ path: root, fsync: false }), { name: 'bench-local' });
    await fill(await initRepository(local, {}));
    await measure('local', local);

    const s3 = (endpoint: string): Promise<RemoteStore> =>
      Promise.resolve(
        s3Plugin.create(
          { endpoint, region: distant.s3.region, bucket: 'bench', ...distant.credentials, forcePathStyle: true },
          { name: 'bench-s3' },
        ),
      );
    // Written next to s3rver, read from a round trip away.
    await fill(await initRepository(await s3(distant.s3.endpoint), {}));
    await measure(`s3 ${roundTripMs} ms away`, await s3(distant.endpoint));
  } finally {
    await distant.stop();
    await rm(root, { recursive: true, force: true });
  }
}

runBench(main);
