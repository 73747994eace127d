// Peak memory while ingesting a large disk (typical data generated on the fly, nothing on disk
// but the repository's own chunks; --sparse leaves 90% of the disk unallocated). The source
// fills a few reused buffers that the writer hands back (DiskBlock.release); --fresh-buffers
// allocates 2 MiB per block instead, as today's VHD stream parser does.
//   node bin/run.js bench/repository/memory.bench.ts [--size-gib 4] [--big (50 GiB)] [--sparse] [--fresh-buffers]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Remote } from '@haven/remote-sdk';
import { LocalDriver } from '@haven/remote-local';
import { initRepository, type DiskBlock } from '@haven/repository';
import { arg, flag } from '../bench.kit';
import { BLOCK, MiB, mbps, typicalBlockInto } from './typical-disk.source';

async function main(): Promise<void> {
  const sizeGiB = flag('big') ? 50 : arg('size-gib', 4);
  const sparse = flag('sparse');
  const fresh = flag('fresh-buffers');
  const blocks = (sizeGiB * 1024 * MiB) / BLOCK;
  const work = await mkdtemp(join(process.env['HAVEN_BENCH_DIR'] ?? tmpdir(), 'haven-memory-'));
  const baseline = process.memoryUsage.rss();
  let peak = 0;
  let atPeak = process.memoryUsage();
  let ticks = 0;
  const sample = setInterval(() => {
    const usage = process.memoryUsage();
    if (usage.rss > peak) [peak, atPeak] = [usage.rss, usage];
    if (flag('trace') && ++ticks % 40 === 0) {
      console.log(
        `rss ${(usage.rss / MiB).toFixed(0)} heap ${(usage.heapUsed / MiB).toFixed(0)} ext ${(usage.external / MiB).toFixed(0)} ab ${(usage.arrayBuffers / MiB).toFixed(0)}`,
      );
    }
  }, 50);
  try {
    const repo = await initRepository(
      new Remote(new LocalDriver({ path: work, fsync: false }), { name: 'bench-memory' }),
      { key: 'bench' },
    );
    const free: Buffer[] = [];
    let sourceBuffers = 0;
    const source = function* (): Generator<DiskBlock> {
      for (let index = 0; index < blocks; index++) {
        if (sparse && index % 10 !== 0) continue;
        let buffer = fresh ? Buffer.allocUnsafe(BLOCK) : free.pop();
        if (buffer === undefined) {
          buffer = Buffer.allocUnsafeSlow(BLOCK);
          sourceBuffers++;
        }
        const data = typicalBlockInto(
          `mem-${index % 7 === 0 ? 'dup' : index}`,
          index % 7 === 0 ? 0 : index,
          buffer,
        );
        const reused = buffer;
        yield fresh ? { index, data } : { index, data, release: () => free.push(reused) };
      }
    };
    const start = performance.now();
    const writer = await repo.createRestorePointWriter(
      { vm: { uuid: 'mem', name: 'mem' } },
      { concurrency: arg('concurrency', 4) },
    );
    await writer.writeDisk({ key: 'xvda', virtualSize: blocks * BLOCK }, source());
    await writer.commit();
    const ms = performance.now() - start;
    peak = Math.max(peak, process.resourceUsage().maxRSS * 1024);
    console.log(
      `ingested a ${sizeGiB} GiB ${sparse ? 'sparse (10% allocated)' : 'typical'} disk in ${(ms / 1000).toFixed(1)} s ` +
        `(${mbps(blocks * BLOCK, ms)} logical): peak RSS ${(peak / MiB).toFixed(0)} MiB (budget 256 MiB; ` +
        `${(baseline / MiB).toFixed(0)} MiB before ingest: Node + swc runtime; at peak V8 heap ` +
        `${(atPeak.heapUsed / MiB).toFixed(0)} MiB, buffers ${(atPeak.arrayBuffers / MiB).toFixed(0)} MiB); source: ` +
        (fresh ? 'a fresh 2 MiB buffer per block' : `${sourceBuffers} reused 2 MiB buffers`) +
        `; MALLOC_ARENA_MAX=${process.env['MALLOC_ARENA_MAX'] ?? 'unset'}`,
    );
  } finally {
    clearInterval(sample);
    await rm(work, { recursive: true, force: true });
  }
}

void main();
