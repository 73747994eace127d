/**
 * Cost of a backup.full task against a baseline measured in the same run: the simulator runs as
 * its own process; the baseline snapshots the VM, exports it with XapiPool.exportVm (same host
 * compression) into a file on the same disk as the remotes, fsyncs it and removes the snapshot
 * (the least a full backup must do: `cp` of the export). Figures:
 * - full backup with zstd to 1 encrypted local remote (segments sealed with AES-256-GCM), and to an
 *   encrypted and a plain remote at once (one export fanned out), as ratios to the zstd baseline;
 * - full backup without compression to 1 plain local remote, as a ratio to the uncompressed baseline;
 * - restore of the zstd archive as a new VM (read, unseal, SHA-256 check, XVA import), as a ratio
 *   to the backup's time;
 * - peak RSS of this process, and peak memory held by Buffers above each step's start (segments are
 *   held whole: memory must not grow with the VM).
 *
 *   node bin/run.js bench/jobs/backup-full.bench.ts          # 1 GiB disk
 *   node bin/run.js bench/jobs/backup-full.bench.ts --full   # 8 GiB disk
 *   MALLOC_ARENA_MAX=2 node bench/repository/precompiled.runner.js bench/jobs/backup-full.bench.ts
 *     # memory without the TypeScript compiler, with the launchers' allocator setting
 */
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { JobDefinition, JobResources, TaskExecutionContext } from '@haven/plugin-sdk';
import { XapiPool, type XvaCompression } from '@haven/xapi';
import { backupVmFull } from '@haven/job-backup-full';
import { executeRestoreVm } from '@haven/service-transfer';
import { XapiSimTestServer } from '@haven/testing';
import { simPool, localRemotes } from './bench.resources';
import { tuneGarbageCollectorForDataPath } from '@haven/service-core';

const full = process.argv.includes('--full');
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const diskSize = full ? 8 * GiB : 1 * GiB;
const PASSPHRASE = 'bench full backup passphrase';

/** A full garbage collection (the flag set at run time: the bench is started without --expose-gc). */
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

let peakRss = 0;
let peakBuffers = 0;

/**
 * Time of `work`, the peak RSS of this process while it ran, and the peak of the memory held by
 * Buffers (`arrayBuffers`, live and not yet collected) above what it was at the start: the task's
 * working set, without what the allocator keeps from earlier steps.
 */
async function timed<T>(
  work: () => Promise<T>,
): Promise<{ seconds: number; value: T; peakMiB: number; startMiB: number; buffersMiB: number }> {
  // Each step starts from a collected heap: the Buffers of the step before do not count.
  collectGarbage();
  const { rss: startRss, arrayBuffers: startBuffers } = process.memoryUsage();
  peakRss = startRss;
  peakBuffers = startBuffers;
  const start = performance.now();
  const value = await work();
  return {
    seconds: (performance.now() - start) / 1000,
    value,
    peakMiB: peakRss / 1024 / 1024,
    startMiB: startRss / 1024 / 1024,
    buffersMiB: (peakBuffers - startBuffers) / 1024 / 1024,
  };
}

async function main(): Promise<void> {
  // As a transfer worker does when it takes its first task.
  tuneGarbageCollectorForDataPath();
  const loadedRss = process.memoryUsage().rss;
  const root = await mkdtemp(join(tmpdir(), 'haven-bench-full-'));
  const sim = await XapiSimTestServer.start({ vms: 1, diskSize: String(diskSize), seed: 'bench-full' });
  const url = sim.url;
  const sampler = setInterval(() => {
    const { rss, arrayBuffers } = process.memoryUsage();
    peakRss = Math.max(peakRss, rss);
    peakBuffers = Math.max(peakBuffers, arrayBuffers);
  }, 100);
  try {
    const pool = await XapiPool.connect({ url, username: 'root', password: 'password' });
    const vm = (await pool.listVms()).at(0);
    if (vm === undefined) throw new Error('the simulator has no VM');

    // The least a full backup must do: snapshot, export, write the bytes to a file on the remote's
    // disk and fsync it (what `cp` + `sync` would), remove the snapshot.
    const baseline = async (compression: XvaCompression) =>
      timed(async () => {
        const snapshot = await pool.snapshotVm(vm, { name: `baseline ${compression}` });
        try {
          const file = await open(join(root, `baseline-${compression}.xva`), 'w');
          let bytes = 0;
          try {
            for await (const part of await pool.exportVm(snapshot.ref, { compression })) {
              await file.write(part as Buffer);
              bytes += (part as Buffer).length;
            }
            await file.sync();
          } finally {
            await file.close();
          }
          return bytes;
        } finally {
          await pool.destroySnapshot(snapshot);
        }
      });
    const resources: JobResources = {
      pool: simPool(url),
      remote: localRemotes(root, (id) => (id.startsWith('sealed') ? PASSPHRASE : undefined)),
    };
    const context: TaskExecutionContext = {
      signal: new AbortController().signal,
      reportProgress: () => undefined,
      log: () => undefined,
      resources,
    };
    const backup = async (remotes: string[], compression: XvaCompression, taskId: string) => {
      const job: JobDefinition = {
        id: `bench-${taskId}`,
        tenantId: 'bench',
        name: 'bench',
        type: 'backup.full',
        selection: { poolId: 'sim', mode: 'explicit', vms: [vm.uuid] },
        remoteIds: remotes,
        settings: { compression },
      };
      return timed(() =>
        backupVmFull(
          {
            taskId,
            runId: taskId,
            tenantId: 'bench',
            type: 'backup.full.vm',
            subject: vm.name,
            input: { vm: vm.uuid },
            attempt: 1,
            job,
          },
          context,
        ),
      );
    };
    for (const name of ['sealed-1', 'sealed-2', 'plain-2', 'plain-1']) await mkdir(join(root, name));

    const zstdBaseline = await baseline('zstd');
    const noneBaseline = await baseline('none');
    const one = await backup(['sealed-1'], 'zstd', 'zstd-1');
    const two = await backup(['sealed-2', 'plain-2'], 'zstd', 'zstd-2');
    const plain = await backup(['plain-1'], 'none', 'none-1');
    const point = one.value.restorePoints.at(0);
    if (point === undefined) throw new Error('the backup committed nothing');
    const restored = await timed(() =>
      executeRestoreVm(
        {
          taskId: 'restore-1',
          input: {
            restorePointId: 'bench',
            remoteId: 'sealed-1',
            manifestKey: point.manifestKey,
            poolId: 'sim',
          },
        },
        context,
      ),
    );
    await pool.destroyVm((await pool.getVm(restored.value.vmUuid)).ref, { withDisks: true });
    await pool.close();

    const mib = (bytes: number) => (bytes / MiB).toFixed(0);
    const rate = (bytes: number, seconds: number) => `${(bytes / MiB / seconds).toFixed(0)} MiB/s`;
    console.log(
      `backup.full, ${diskSize / MiB} MiB disk; XVA ${mib(zstdBaseline.value)} MiB with zstd, ${mib(noneBaseline.value)} MiB without`,
    );
    console.log(
      `baseline export to file, zstd: ${zstdBaseline.seconds.toFixed(2)} s (${rate(zstdBaseline.value, zstdBaseline.seconds)} of XVA)`,
    );
    console.log(
      `full backup zstd, 1 sealed:   ${one.seconds.toFixed(2)} s = ${(one.seconds / zstdBaseline.seconds).toFixed(2)} x baseline`,
    );
    console.log(
      `full backup zstd, 2 remotes:  ${two.seconds.toFixed(2)} s = ${(two.seconds / zstdBaseline.seconds).toFixed(2)} x baseline (sealed + plain, one export)`,
    );
    console.log(
      `baseline export to file, none: ${noneBaseline.seconds.toFixed(2)} s (${rate(noneBaseline.value, noneBaseline.seconds)} of XVA)`,
    );
    console.log(
      `full backup none, 1 plain:    ${plain.seconds.toFixed(2)} s = ${(plain.seconds / noneBaseline.seconds).toFixed(2)} x baseline`,
    );
    console.log(
      `restore of the zstd archive:  ${restored.seconds.toFixed(2)} s = ${(restored.seconds / one.seconds).toFixed(2)} x its backup`,
    );
    console.log(
      `peak Buffer memory above the start: backup zstd 1 remote ${one.buffersMiB.toFixed(0)} MiB, 2 remotes ${two.buffersMiB.toFixed(0)} MiB, none ${plain.buffersMiB.toFixed(0)} MiB, restore ${restored.buffersMiB.toFixed(0)} MiB`,
    );
    console.log(
      `peak RSS (at start): backup zstd 1 remote ${one.peakMiB.toFixed(0)} (${one.startMiB.toFixed(0)}) MiB, 2 remotes ${two.peakMiB.toFixed(0)} (${two.startMiB.toFixed(0)}) MiB, none ${plain.peakMiB.toFixed(0)} (${plain.startMiB.toFixed(0)}) MiB, restore ${restored.peakMiB.toFixed(0)} (${restored.startMiB.toFixed(0)}) MiB; this process after loading ${(loadedRss / MiB).toFixed(0)} MiB`,
    );
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
