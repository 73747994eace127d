// Deduplication across clones, and Haven side by side with restic on the same bytes.
//   node bin/run.js bench/repository/dedup.bench.ts [--template-mib 512] [--vms 10] [--big]
// --big uses the 4 GiB template of the target (10 VMs x 4 GiB, 2% own changes each).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Remote } from '@haven/remote-sdk';
import { LocalDriver } from '@haven/remote-local';
import { initRepository, type DiskBlock, type Repository } from '@haven/repository';
import { arg, flag } from '../bench.kit';
import { BLOCK, MiB, fileBlocks, mbps, typicalBlock, writeTypicalDisk } from './typical-disk.source';

const CHANGED = 0.02;

function isChanged(vm: number, index: number): boolean {
  return createHash('sha256').update(`vm${vm}/${index}`).digest().readUInt32BE(0) / 2 ** 32 < CHANGED;
}

/** VM `vm`: the template with 2% of its blocks replaced by its own (random) data. */
function* cloneBlocks(vm: number, blocks: number): Generator<DiskBlock> {
  for (let index = 0; index < blocks; index++) {
    const data = isChanged(vm, index)
      ? typicalBlock(`vm${vm}-own`, index).fill(vm + 1, 0, 64)
      : typicalBlock('template', index);
    yield { index, data };
  }
}

function duBytes(path: string): number {
  return Number(execFileSync('du', ['-sb', path]).toString().split('\t')[0]);
}

async function havenBackup(
  repo: Repository,
  vm: string,
  blocks: AsyncIterable<DiskBlock> | Iterable<DiskBlock>,
  size: number,
): Promise<number> {
  const start = performance.now();
  const writer = await repo.createRestorePointWriter({ vm: { uuid: vm, name: vm } });
  await writer.writeDisk({ key: 'xvda', virtualSize: size }, blocks);
  await writer.commit();
  return performance.now() - start;
}

async function main(): Promise<void> {
  const templateMiB = flag('big') ? 4096 : arg('template-mib', 512);
  const vms = arg('vms', 10);
  const blocks = Math.ceil((templateMiB * MiB) / BLOCK);
  const size = blocks * BLOCK;
  const work = await mkdtemp(join(process.env['HAVEN_BENCH_DIR'] ?? tmpdir(), 'haven-dedup-'));
  try {
    // The remotes' folders (Haven never creates a local remote's own folder).
    for (const name of ['clones', 'single', 'haven']) await mkdir(join(work, name));
    // 1. Ten clones into one repository.
    const store = new Remote(new LocalDriver({ path: join(work, 'clones') }), { name: 'bench-clones' });
    const repo = await initRepository(store, { key: 'bench', compression: { codec: 'zstd', level: 1 } });
    const single = await initRepository(
      new Remote(new LocalDriver({ path: join(work, 'single') }), { name: 'bench-single' }),
      {
        key: 'bench',
      },
    );
    await havenBackup(single, 'vm0', cloneBlocks(0, blocks), size);
    const oneVm = (await single.statistics()).repository.chunkBytes;
    let ms = 0;
    for (let vm = 0; vm < vms; vm++) ms += await havenBackup(repo, `vm${vm}`, cloneBlocks(vm, blocks), size);
    const stats = await repo.statistics();
    console.log(
      `dedup: ${vms} clones of a ${templateMiB} MiB template, ${CHANGED * 100}% own blocks each: ` +
        `stored ${(stats.repository.chunkBytes / MiB).toFixed(0)} MiB = ${(stats.repository.chunkBytes / oneVm).toFixed(2)}x one VM ` +
        `(${(oneVm / MiB).toFixed(0)} MiB stored alone); copies (Xen Orchestra full VHDs) would be ${vms}x; ` +
        `logical ${(stats.repository.logicalBytes / MiB).toFixed(0)} MiB, ratio ${stats.repository.dedupRatio.toFixed(1)}; ` +
        `ingest ${mbps(vms * size, ms)}`,
    );

    // 2. Haven vs restic on the same files: first backup, then after 2% of blocks changed.
    const first = join(work, 'disk.img');
    await writeTypicalDisk(first, 'template', blocks);
    const havenRepo = await initRepository(
      new Remote(new LocalDriver({ path: join(work, 'haven') }), { name: 'bench-haven' }),
      { key: 'bench' },
    );
    const resticRepo = join(work, 'restic');
    const env = {
      ...process.env,
      RESTIC_PASSWORD: 'bench',
      RESTIC_REPOSITORY: resticRepo,
      RESTIC_CACHE_DIR: join(work, 'restic-cache'),
    };
    execFileSync('restic', ['init', '--repository-version', '2'], { env, stdio: 'ignore' });
    const rows: string[] = [];
    for (const run of ['first', 'second']) {
      if (run === 'second') await writeTypicalDisk(first, 'template', blocks, 'second-run', CHANGED);
      execFileSync('cat', [first], { stdio: ['ignore', 'ignore', 'inherit'] });
      const havenMs = await havenBackup(havenRepo, 'vm', fileBlocks(first), size);
      const havenBytes = duBytes(join(work, 'haven'));
      let start = performance.now();
      execFileSync('restic', ['backup', '--quiet', '--compression', 'auto', first], { env, stdio: 'ignore' });
      const resticMs = performance.now() - start;
      const resticBytes = duBytes(resticRepo);
      start = performance.now();
      execFileSync('dd', [`if=${first}`, `of=${join(work, 'dd.img')}`, 'bs=2M', 'conv=fsync'], {
        stdio: 'ignore',
      });
      const ddMs = performance.now() - start;
      await rm(join(work, 'dd.img'));
      rows.push(
        `${run.padEnd(6)} | haven ${(havenMs / 1000).toFixed(1)} s (${mbps(size, havenMs)}), repo ${(havenBytes / MiB).toFixed(0)} MiB ` +
          `| restic ${(resticMs / 1000).toFixed(1)} s (${mbps(size, resticMs)}), repo ${(resticBytes / MiB).toFixed(0)} MiB ` +
          `| restic/haven time ${(resticMs / havenMs).toFixed(2)} | dd ${(ddMs / 1000).toFixed(1)} s`,
      );
    }
    console.log(
      `haven (zstd-1, AES-256-GCM, 2 MiB fixed blocks) vs restic 2 (CDC, zstd auto) on a ${templateMiB} MiB disk image:`,
    );
    for (const row of rows) console.log(`  ${row}`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

void main();
