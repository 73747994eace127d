/**
 * Smart-mode costs of backup.incremental, each against a baseline run in the same script: the
 * simulator runs as its own process, a VM with two disks is backed up to local remotes.
 * - full backup with diskConcurrency 2 vs the same with diskConcurrency 1 (the baseline);
 * - incremental after 1 % of each disk's blocks changed, by VHD delta export and by CBT block
 *   reads, as ratios to the baseline full backup;
 * - an incremental with verifyBase 'full' (the base re-read and re-hashed) vs one with 'existence'.
 *
 *   node bin/run.js bench/jobs/backup-incremental-smart.bench.ts          # 2 x 512 MiB disks
 *   node bin/run.js bench/jobs/backup-incremental-smart.bench.ts --full   # 2 x 4 GiB disks
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { TaskExecutionContext } from '@haven/plugin-sdk';
import { XapiPool } from '@haven/xapi';
import type { VmBackupResult } from '@haven/job-backup-incremental';
import { XapiSimTestServer } from '@haven/testing';
import { backupOneVm, benchJob, simPool, localRemotes } from './bench.resources';
import { tuneGarbageCollectorForDataPath } from '@haven/service-core';

const full = process.argv.includes('--full');
const MiB = 1024 * 1024;
const diskSize = full ? 4096 * MiB : 512 * MiB;

async function main(): Promise<void> {
  // As a transfer worker does when it takes its first task.
  tuneGarbageCollectorForDataPath();
  const root = await mkdtemp(join(tmpdir(), 'haven-bench-smart-'));
  // The first VM of a multi-VM pool has two disks.
  const sim = await XapiSimTestServer.start({ vms: 2, diskSize: String(diskSize), seed: 'bench-smart' });
  const url = sim.url;
  try {
    const pool = await XapiPool.connect({ url, username: 'root', password: 'password' });
    const vm = (await pool.listVms()).find((candidate) => candidate.name === 'sim-vm-0');
    if (vm === undefined || vm.disks.length !== 2) throw new Error('the simulator has no VM with two disks');
    await pool.close();

    let runs = 0;
    const backup = async (
      jobId: string,
      settings: Record<string, unknown>,
    ): Promise<{ seconds: number; result: VmBackupResult }> => {
      const taskId = `task-${++runs}`;
      await mkdir(join(root, jobId), { recursive: true });
      const context: TaskExecutionContext = {
        signal: new AbortController().signal,
        reportProgress: () => undefined,
        log: () => undefined,
        resources: {
          pool: simPool(url),
          remote: localRemotes(root),
        },
      };
      const start = performance.now();
      const job = benchJob(
        jobId,
        vm.uuid,
        [jobId],
        { compression: 'zstd', concurrency: 4, ...settings },
        jobId,
      );
      const result = await backupOneVm(job, vm, taskId, context);
      return { seconds: (performance.now() - start) / 1000, result };
    };
    const changeOnePercent = async (seed: string): Promise<number> => {
      const blocks = Math.max(1, Math.round(diskSize / (2 * MiB) / 100));
      for (const position of [0, 1]) {
        const written = await fetch(`${url}/_sim/disks/${vm.uuid}/write?position=${position}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ blocks, seed: `${seed}-${position}` }),
        });
        if (!written.ok) throw new Error(`workload write failed: ${written.status} ${await written.text()}`);
      }
      return blocks;
    };
    const read = (result: VmBackupResult) =>
      `${(result.disks.reduce((sum, disk) => sum + disk.bytes, 0) / MiB).toFixed(0)} MiB read, ` +
      result.disks.map((disk) => `${disk.mode}/${disk.transport ?? '?'}`).join(' + ');

    const serial = await backup('serial', { diskConcurrency: 1 });
    const parallel = await backup('parallel', { diskConcurrency: 2, useCbt: true });
    const blocks = await changeOnePercent('one');
    const vhdDelta = await backup('serial', { diskConcurrency: 1 });
    const cbtDelta = await backup('parallel', { diskConcurrency: 2, useCbt: true });
    await changeOnePercent('two');
    const existence = await backup('serial', { diskConcurrency: 1, verifyBase: 'existence' });
    await changeOnePercent('three');
    const verified = await backup('serial', { diskConcurrency: 1, verifyBase: 'full' });

    const ratio = (a: number, b: number) => (a / b).toFixed(3);
    console.log(
      `backup.incremental smart mode, VM with 2 disks of ${diskSize / MiB} MiB, zstd, 1 local remote`,
    );
    console.log(
      `baseline: full, diskConcurrency 1:   ${serial.seconds.toFixed(2)} s (${read(serial.result)})`,
    );
    console.log(
      `full, diskConcurrency 2:             ${parallel.seconds.toFixed(2)} s = ${ratio(parallel.seconds, serial.seconds)} x baseline`,
    );
    console.log(
      `incremental, ${blocks} blocks/disk changed, VHD delta: ${vhdDelta.seconds.toFixed(2)} s = ${ratio(vhdDelta.seconds, serial.seconds)} x baseline (${read(vhdDelta.result)})`,
    );
    console.log(
      `incremental, ${blocks} blocks/disk changed, CBT:       ${cbtDelta.seconds.toFixed(2)} s = ${ratio(cbtDelta.seconds, serial.seconds)} x baseline (${read(cbtDelta.result)})`,
    );
    console.log(
      `incremental, verifyBase full vs existence: ${verified.seconds.toFixed(2)} s vs ${existence.seconds.toFixed(2)} s = ${ratio(verified.seconds, existence.seconds)} x`,
    );
  } finally {
    await sim.stop();
    await rm(root, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
