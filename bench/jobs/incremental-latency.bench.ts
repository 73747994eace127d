/**
 * backup.incremental to an S3 remote a round trip away: a full backup, then an incremental after
 * 1 % of the disk's blocks changed, the incremental's time as a ratio to the full's (issue 6's
 * figure (b), measured on an object store instead of a local remote). The same two backups to a
 * local remote run first, in the same process, as the baseline of what the round trip costs.
 * s3rver stands in for the object store, behind a proxy that delays every byte by half the round
 * trip each way (bandwidth not limited). The simulator runs as its own process.
 *
 *   node bin/run.js bench/jobs/incremental-latency.bench.ts                  # 1 GiB disk, 40 ms
 *   node bin/run.js bench/jobs/incremental-latency.bench.ts --gib 4 --rtt-ms 80
 *
 * s3rver ignores If-None-Match: every new chunk costs a HEAD, a PUT and a read-back there, where a
 * real object store answers the conditional PUT alone.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { RemoteAccess, TaskExecutionContext } from '@haven/plugin-sdk';
import { plugin as s3Plugin } from '@haven/remote-s3';
import { XapiPool } from '@haven/xapi';
import { XapiSimTestServer } from '@haven/testing';
import { arg, runBench } from '../bench.kit';
import { startDistantS3 } from '../remotes/distant-s3';
import { backupOneVm, benchJob, localRemotes, simPool } from './bench.resources';

const GiB = 1024 ** 3;
const diskSize = arg('gib', 1) * GiB;
const roundTripMs = arg('rtt-ms', 40);
const BLOCK = 2 * 1024 * 1024;

async function timed<T>(work: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const start = performance.now();
  const value = await work();
  return { seconds: (performance.now() - start) / 1000, value };
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'haven-bench-incremental-latency-'));
  const sim = await XapiSimTestServer.start({ vms: 1, diskSize: String(diskSize), seed: 'bench-latency' });
  const distant = await startDistantS3(roundTripMs, ['bench']);
  const url = sim.url;
  try {
    const pool = await XapiPool.connect({ url, username: 'root', password: 'password' });
    const vm = (await pool.listVms()).at(0);
    if (vm === undefined) throw new Error('the simulator has no VM');
    await pool.close();
    const local = localRemotes(root);
    const s3Remote = async (id: string): Promise<RemoteAccess> => ({
      id,
      name: id,
      type: 's3',
      store: await s3Plugin.create(
        {
          endpoint: distant.endpoint,
          region: distant.s3.region,
          bucket: 'bench',
          prefix: id,
          ...distant.credentials,
          forcePathStyle: true,
        },
        { name: id },
      ),
    });
    const remote = (id: string): Promise<RemoteAccess> => (id.startsWith('s3') ? s3Remote(id) : local(id));

    const backup = (remoteId: string, taskId: string) => {
      const job = benchJob(`bench-${remoteId}`, vm.uuid, [remoteId], { compression: 'none' });
      const context: TaskExecutionContext = {
        signal: new AbortController().signal,
        reportProgress: () => undefined,
        log: () => undefined,
        resources: { pool: simPool(url), remote },
      };
      return timed(() => backupOneVm(job, vm, taskId, context));
    };
    const changeOnePercent = async (seed: string): Promise<number> => {
      const blocks = Math.max(1, Math.round((diskSize / BLOCK) * 0.01));
      const written = await fetch(`${url}/_sim/disks/${vm.uuid}/write`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ blocks, seed }),
      });
      if (!written.ok) throw new Error(`workload write failed: ${written.status}`);
      return blocks;
    };

    process.stdout.write(
      `backup.incremental, ${diskSize / GiB} GiB disk, no compression; S3 is s3rver ${roundTripMs} ms away\n`,
    );
    const report = (label: string, seconds: number, full?: number): void => {
      const ratio = full === undefined ? '' : `  = ${(seconds / full).toFixed(3)}x the full`;
      process.stdout.write(`${label.padEnd(40)} ${seconds.toFixed(2).padStart(7)} s${ratio}\n`);
    };
    for (const [kind, remoteId] of [
      ['local (baseline)', 'local-1'],
      ['S3', 's3-1'],
    ] as const) {
      const first = await backup(remoteId, `${remoteId}-full`);
      report(`${kind}: full`, first.seconds);
      // Each remote's incremental covers its own 1 %: the disk changes again before each.
      const blocks = await changeOnePercent(`${remoteId}-1`);
      const second = await backup(remoteId, `${remoteId}-incr`);
      const disk = second.value.disks.at(0);
      report(`${kind}: incremental (${blocks} blocks)`, second.seconds, first.seconds);
      process.stdout.write(
        `  ${disk?.mode ?? '?'}, read ${((disk?.bytes ?? 0) / 1024 / 1024).toFixed(0)} MiB\n`,
      );
    }
  } finally {
    await distant.stop();
    await sim.stop();
    await rm(root, { recursive: true, force: true });
  }
}

runBench(main);
