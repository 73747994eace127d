// Ingest throughput of one restore point: hash + zstd-1 + AES-256-GCM + write to a local remote,
// against dd of the same bytes to the same disk, in the same run. One core: run under
// `taskset -c 0` (done here by re-executing itself): every thread, libuv pool included, shares
// one core, while fsync waits may still overlap.
// The source reads the file into a few buffers the writer hands back (DiskBlock.release), like
// dd's one buffer; --fresh-buffers allocates 2 MiB per block instead (today's VHD stream parser).
//   node bin/run.js bench/repository/ingest.bench.ts [--size-mib 1024] [--big] [--all-cores] [--fresh-buffers]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Remote } from '@haven/remote-sdk';
import { LocalDriver } from '@haven/remote-local';
import { initRepository } from '@haven/repository';
import { arg, flag } from '../bench.kit';
import { BLOCK, MiB, fileBlocks, mbps, writeTypicalDisk } from './typical-disk.source';

async function main(): Promise<void> {
  if (!flag('all-cores') && process.env['HAVEN_BENCH_PINNED'] === undefined) {
    const result = spawnSync(
      'taskset',
      ['-c', '0', process.execPath, join(__dirname, '..', '..', 'bin', 'run.js'), ...process.argv.slice(1)],
      {
        stdio: 'inherit',
        env: { ...process.env, HAVEN_BENCH_PINNED: '1' },
      },
    );
    process.exit(result.status ?? 1);
  }
  const sizeMiB = flag('big') ? 8192 : arg('size-mib', 1024);
  const blocks = Math.ceil((sizeMiB * MiB) / BLOCK);
  const bytes = blocks * BLOCK;
  const work = await mkdtemp(join(process.env['HAVEN_BENCH_DIR'] ?? tmpdir(), 'haven-ingest-'));
  try {
    const source = join(work, 'source.img');
    await writeTypicalDisk(source, 'ingest', blocks);
    execFileSync('cat', [source], { stdio: ['ignore', 'ignore', 'inherit'] }); // warm the page cache for both

    const rows: [string, number][] = [];
    for (const fsync of [true, false]) {
      const ddOut = join(work, `dd-${fsync}.img`);
      let start = performance.now();
      execFileSync('dd', [`if=${source}`, `of=${ddOut}`, 'bs=2M', ...(fsync ? ['conv=fsync'] : [])], {
        stdio: 'ignore',
      });
      const ddMs = performance.now() - start;
      await rm(ddOut);

      const repoPath = join(work, `repo-${fsync}`);
      await mkdir(repoPath);
      const store = new Remote(new LocalDriver({ path: repoPath, fsync }), { name: 'bench-local' });
      const repo = await initRepository(store, {
        key: 'bench passphrase',
        compression: { codec: 'zstd', level: 1 },
      });
      start = performance.now();
      const cpuBefore = process.cpuUsage();
      const writer = await repo.createRestorePointWriter({ vm: { uuid: 'bench', name: 'bench' } });
      const disk = await writer.writeDisk(
        { key: 'xvda', virtualSize: bytes },
        fileBlocks(source, flag('fresh-buffers')),
      );
      await writer.commit();
      const havenMs = performance.now() - start;
      const cpu = process.cpuUsage(cpuBefore);
      // CPU seconds of this process (all threads): the figure others' load on the machine does not skew.
      const cpuMs = (cpu.user + cpu.system) / 1000;
      const stored = (await repo.statistics()).repository.chunkBytes;
      console.log(
        `fsync=${fsync}: dd ${mbps(bytes, ddMs)} (${ddMs.toFixed(0)} ms) | haven ${mbps(bytes, havenMs)} (${havenMs.toFixed(0)} ms) ` +
          `| haven/dd time ratio ${(havenMs / ddMs).toFixed(2)} | stored ${(stored / MiB).toFixed(0)} MiB of ${(bytes / MiB).toFixed(0)} MiB ` +
          `(${disk.allocatedBlocks} data blocks, ${blocks - disk.allocatedBlocks} zero) | haven CPU ${(cpuMs / 1000).toFixed(2)} s ` +
          `(user ${(cpu.user / 1e6).toFixed(2)} + system ${(cpu.system / 1e6).toFixed(2)}) = ${mbps(bytes, cpuMs)} per CPU-second`,
      );
      rows.push([`fsync=${fsync}`, havenMs]);
      await rm(repoPath, { recursive: true, force: true });
    }
    console.log(
      `size ${sizeMiB} MiB, pinned to one core: ${process.env['HAVEN_BENCH_PINNED'] === '1'}, source: ` +
        `${flag('fresh-buffers') ? 'a fresh buffer per block' : 'reused buffers'}, load average ${loadavg()
          .map((load) => load.toFixed(1))
          .join(' ')}`,
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

void main();
