// The `existence` check of an incremental's base restore point (missingAmong), one stat per chunk
// of the base against the baseline of one listing of chunks/, on a repository that also holds the
// chunks of many other VMs (as a shared, multi-tenant one does).
//   node bin/run.js bench/repository/base-check.bench.ts [--base 1024] [--others 20000]
// Chunks are 4 KiB here (each disk is one block shorter than 2 MiB): what is measured is the
// number of objects, not their size.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import localRemote from '@haven/remote-local';
import { initRepository, type Repository, SortedChunkIds } from '@haven/repository';
import { arg } from '../bench.kit';

const CHUNK = 4096;

/** One restore point of `disks` one-block disks of random content: `disks` new chunks. */
async function writePoint(repository: Repository, vm: string, disks: number): Promise<Set<string>> {
  const writer = await repository.createRestorePointWriter(
    { vm: { uuid: vm, name: vm } },
    { knownChunks: 'none', concurrency: 16 },
  );
  const ids = new Set<string>();
  for (let disk = 0; disk < disks; disk++) {
    const data = randomBytes(CHUNK);
    ids.add(repository.chunks.idOf(data).toString('hex'));
    await writer.writeDisk({ key: `d${disk}`, virtualSize: CHUNK }, [{ index: 0, data }]);
  }
  await writer.commit();
  return ids;
}

async function timed<T>(work: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const start = performance.now();
  const value = await work();
  return { seconds: (performance.now() - start) / 1000, value };
}

async function main(): Promise<void> {
  const baseChunks = arg('base', 1024);
  const otherChunks = arg('others', 20_000);
  const root = await mkdtemp(join(tmpdir(), 'haven-bench-base-check-'));
  try {
    const store = await localRemote.create({ path: root }, { name: 'bench' });
    const repository = await initRepository(store, {});
    const perVm = 2000;
    for (let written = 0; written < otherChunks; written += perVm)
      await writePoint(repository, `other-${written / perVm}`, Math.min(perVm, otherChunks - written));
    const base = SortedChunkIds.fromHex(await writePoint(repository, 'the-vm', baseChunks));

    // Alternating, twice each: the page cache helps whichever runs second.
    const rounds: { perChunk: number; listing: number }[] = [];
    for (let round = 0; round < 2; round++) {
      const perChunk = await timed(() => repository.chunks.missingAmong(base, { method: 'per-chunk' }));
      const listing = await timed(() => repository.chunks.missingAmong(base, { method: 'listing' }));
      if (perChunk.value.size !== 0 || listing.value.size !== 0)
        throw new Error('a chunk of the base was reported missing');
      rounds.push({ perChunk: perChunk.seconds, listing: listing.seconds });
    }
    console.log(`local remote: a base of ${baseChunks} chunks among ${otherChunks + baseChunks} chunks`);
    for (const [index, round] of rounds.entries()) {
      console.log(
        `round ${index + 1}: one listing of chunks/ (baseline) ${round.listing.toFixed(3)} s, a stat per chunk ${round.perChunk.toFixed(3)} s = ${(round.perChunk / round.listing).toFixed(3)} x`,
      );
    }
    await store.close();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
