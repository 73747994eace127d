/**
 * Cost of a backup.incremental task against a baseline measured in the same run: the simulator
 * runs as its own process; the baseline is the same disk exported with XapiPool.exportVhd and
 * parsed block by block with @haven/vhd, data discarded (the least a backup must do). Figures:
 * - full backup to 1 local remote, and to 2 (one export fanned out), as ratios to the baseline;
 * - incremental backup after ~5 % of the blocks changed, as a ratio to the full backup;
 * - peak RSS of this process (memory must not grow with the disk).
 *
 *   node bin/run.js bench/jobs/backup-incremental.bench.ts          # 1 GiB disk
 *   node bin/run.js bench/jobs/backup-incremental.bench.ts --full   # 8 GiB disk
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { TaskExecutionContext } from '@haven/plugin-sdk';
import { parseVhdStream } from '@haven/vhd';
import { XapiPool } from '@haven/xapi';
import { XapiSimTestServer } from '@haven/testing';
import { backupOneVm, benchJob, simPool, localRemotes } from './bench.resources';
import { tuneGarbageCollectorForDataPath } from '@haven/service-core';

const full = process.argv.includes('--full');
const GiB = 1024 ** 3;
const diskSize = full ? 8 * GiB : 1 * GiB;

async function timed<T>(work: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const start = performance.now();
  const value = await work();
  return { seconds: (performance.now() - start) / 1000, value };
}

async function main(): Promise<void> {
  // As a transfer worker does when it takes its first task.
  tuneGarbageCollectorForDataPath();
  const root = await mkdtemp(join(tmpdir(), 'haven-bench-backup-'));
  const sim = await XapiSimTestServer.start({ vms: 1, diskSize: String(diskSize), seed: 'bench-backup' });
  const url = sim.url;
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
  try {
    const pool = await XapiPool.connect({ url, username: 'root', password: 'password' });
    const vm = (await pool.listVms()).at(0);
    if (vm === undefined) throw new Error('the simulator has no VM');
    const disk = vm.disks.at(0);
    if (disk === undefined) throw new Error('the VM has no disk');

    const baseline = await timed(async () => {
      let blocks = 0;
      for await (const item of parseVhdStream(await pool.exportVhd(disk.vdiRef)))
        if (item.type === 'block') blocks++;
      return blocks;
    });

    const backup = async (remotes: string[], taskId: string) => {
      const job = benchJob(`bench-${remotes.length}`, vm.uuid, remotes, {
        compression: 'zstd',
        concurrency: 4,
      });
      const context: TaskExecutionContext = {
        signal: new AbortController().signal,
        reportProgress: () => undefined,
        log: () => undefined,
        resources: {
          pool: simPool(url),
          remote: localRemotes(root),
        },
      };
      return timed(() => backupOneVm(job, vm, taskId, context));
    };
    const { mkdir } = await import('node:fs/promises');
    for (const name of ['r1', 'r2a', 'r2b']) await mkdir(join(root, name));
    const one = await backup(['r1'], 'full-1');
    const two = await backup(['r2a', 'r2b'], 'full-2');
    const changedBlocks = Math.max(1, Math.round((diskSize / (2 * 1024 * 1024)) * 0.05));
    const written = await fetch(`${url}/_sim/disks/${vm.uuid}/write`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ blocks: changedBlocks, seed: 'bench' }),
    });
    if (!written.ok) throw new Error(`workload write failed: ${written.status}`);
    const incremental = await backup(['r1'], 'incr-1');
    await pool.close();

    const mib = diskSize / 1024 / 1024;
    console.log(`backup.incremental, ${mib} MiB disk, ${baseline.value} allocated blocks, zstd level 1`);
    console.log(
      `baseline export+parse:      ${baseline.seconds.toFixed(2)} s (${(mib / baseline.seconds).toFixed(0)} MiB/s of disk)`,
    );
    console.log(
      `full backup, 1 remote:      ${one.seconds.toFixed(2)} s = ${(one.seconds / baseline.seconds).toFixed(2)} x baseline`,
    );
    console.log(
      `full backup, 2 remotes:     ${two.seconds.toFixed(2)} s = ${(two.seconds / baseline.seconds).toFixed(2)} x baseline`,
    );
    console.log(
      `incremental (${changedBlocks} blocks changed): ${incremental.seconds.toFixed(2)} s = ${(incremental.seconds / one.seconds).toFixed(3)} x full; ${incremental.value.disks[0]?.mode ?? '?'} read ${((incremental.value.disks[0]?.bytes ?? 0) / 1024 / 1024).toFixed(0)} MiB`,
    );
    console.log(`peak RSS of this process:   ${(peakRss / 1024 / 1024).toFixed(0)} MiB`);
  } finally {
    clearInterval(sampler);
    await sim.stop();
    await rm(root, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
