import { setTimeout as sleep } from 'node:timers/promises';
import { scratchDir } from '@haven/testing';
import { isRemoteError } from '@haven/remote-sdk';
import { chunkKey, trashBatchKey, trashChunkKey } from '../format/repository.layout';
import { initRepository, type Repository } from '../repository';
import type { DiskBlock } from '../restore-point.writer';
import {
  blocksOf,
  changedDisk,
  collect,
  localRemote,
  patternedDisk,
  rawImage,
  type DiskPattern,
} from '../testing/disk-pattern.fixture';

async function backup(repo: Repository, vm: string, disk: DiskPattern) {
  const writer = await repo.createRestorePointWriter({ vm: { uuid: vm, name: vm } });
  await writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
  return writer.commit();
}

async function chunkSet(repo: Repository): Promise<Set<string>> {
  const listing = await repo.chunks.listing();
  return new Set([...listing.ids()].map((id) => id.toString('hex')));
}

async function referencedBy(repo: Repository, id: string): Promise<Set<string>> {
  const reader = (await repo.openRestorePoint(id)).disk('xvda');
  return new Set(reader.allocatedBlocks.map((block) => reader.chunkId(block)!));
}

async function expectRestores(repo: Repository, id: string, disk: DiskPattern): Promise<void> {
  const raw = await collect((await repo.openRestorePoint(id)).disk('xvda').createReadStream());
  expect(raw.equals(rawImage(disk))).toBe(true);
}

describe('garbage collection', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let repo: Repository;
  beforeEach(async () => {
    dir = await scratchDir('haven-gc-');
    repo = await initRepository(localRemote(dir.path), { key: 'gc', kdf: { N: 1024 } });
  });
  afterEach(() => dir.cleanup());

  it('after expiry frees exactly the unreferenced chunks', async () => {
    const first = patternedDisk('gc-a', 12);
    const second = changedDisk(first, 'gc-b', 4);
    const a = await backup(repo, 'vm', first);
    const b = await backup(repo, 'vm', second);
    const before = await chunkSet(repo);
    const keep = await referencedBy(repo, b.id);
    const onlyA = [...(await referencedBy(repo, a.id))].filter((id) => !keep.has(id));
    expect(onlyA.length).toBeGreaterThan(0);

    // A GC with a live window frees nothing.
    expect(await repo.collectGarbage()).toMatchObject({ trashedChunks: 0, purgedChunks: 0 });
    await repo.deleteRestorePoint(a.id);
    expect(await repo.listRestorePointIds()).toEqual([b.id]);
    const report = await repo.collectGarbage({ safetyWindowMs: 0 });
    expect(report).toMatchObject({
      restorePoints: 1,
      trashedChunks: onlyA.length,
      purgedChunks: onlyA.length,
      restoredChunks: 0,
    });
    expect([...(await chunkSet(repo))].sort()).toEqual([...before].filter((id) => keep.has(id)).sort());
    await expectRestores(repo, b.id, second);
    expect((await repo.verify()).ok).toBe(true);
  });

  it('keeps the chunks a backup running during GC relies on', async () => {
    const disk = patternedDisk('gc-run', 10);
    const old = await backup(repo, 'vm', disk);
    await repo.deleteRestorePoint(old.id);
    // The writer starts while the old chunks still exist: it will reuse them without uploading.
    const writer = await repo.createRestorePointWriter({ vm: { uuid: 'vm', name: 'vm' } });
    const gc1 = await repo.collectGarbage({ safetyWindowMs: 0 });
    expect(gc1.trashedChunks).toBeGreaterThan(0);
    expect(gc1).toMatchObject({
      purgedChunks: 0,
      batchesKeptForWriters: 1,
      liveWriters: [expect.stringContaining(writer.id)],
    });
    const result = await writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
    expect(result.uploadedChunks).toBe(0);
    const manifest = await writer.commit();
    // Readable at once (from trash), and the next GC brings every chunk home, purging nothing.
    await expectRestores(repo, manifest.id, disk);
    expect((await repo.verify()).ok).toBe(true);
    const gc2 = await repo.collectGarbage({ safetyWindowMs: 0 });
    expect(gc2).toMatchObject({ restoredChunks: gc1.trashedChunks, purgedChunks: 0 });
    expect(await chunkSet(repo)).toEqual(await referencedBy(repo, manifest.id));
    await expectRestores(repo, manifest.id, disk);
  });

  it('loses nothing when backups, expiry and GC run at the same time', async () => {
    const base = patternedDisk('gc-conc', 8);
    // Alternating contents with keep-1 retention: every backup reuses chunks of an expired one.
    const other = changedDisk(base, 'gc-conc-other', 6);
    const versions = [base, other, base, other, base, other, base];
    const committed: { id: string; disk: DiskPattern }[] = [];
    const state = { backupsDone: false };
    const slow = async function* (disk: DiskPattern): AsyncGenerator<DiskBlock> {
      for (const block of blocksOf(disk)) {
        await sleep(30);
        yield block;
      }
    };
    const backups = (async () => {
      try {
        for (const disk of versions) {
          const writer = await repo.createRestorePointWriter(
            { vm: { uuid: 'vm', name: 'vm' } },
            { concurrency: 2 },
          );
          await writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, slow(disk));
          committed.push({ id: (await writer.commit()).id, disk });
          // Each restore point is checked while GC keeps running, before retention expires it.
          await expectRestores(repo, committed.at(-1)!.id, disk);
          while (committed.length > 1) await repo.deleteRestorePoint(committed.shift()!.id);
        }
      } finally {
        state.backupsDone = true;
      }
    })();
    const collections = (async () => {
      let runs = 0;
      while (!state.backupsDone) {
        try {
          await repo.collectGarbage({ safetyWindowMs: 0 });
          runs++;
        } catch (error) {
          if (!isRemoteError(error, 'LOCKED')) throw error;
        }
        await sleep(10);
      }
      return runs;
    })();
    const [, runs] = await Promise.all([backups, collections]);
    expect(runs).toBeGreaterThan(1);
    for (const { id, disk } of committed) await expectRestores(repo, id, disk);
    await repo.collectGarbage({ safetyWindowMs: 0 });
    const report = await repo.verify();
    expect(report).toMatchObject({ ok: true, chunksInTrash: 0 });
    expect(await chunkSet(repo)).toEqual(await referencedBy(repo, committed[0].id));
    for (const { id, disk } of committed) await expectRestores(repo, id, disk);
  });

  it('finishes the trash batch of a GC that died while moving, restoring what is referenced', async () => {
    const kept = patternedDisk('gc-died-kept', 6);
    const gone = patternedDisk('gc-died-gone', 6);
    const keep = await backup(repo, 'vm', kept);
    const expire = await backup(repo, 'vm', gone);
    const keepIds = await referencedBy(repo, keep.id);
    const goneIds = [...(await referencedBy(repo, expire.id))].filter((id) => !keepIds.has(id));
    await repo.deleteRestorePoint(expire.id);
    // What a GC killed mid-sweep leaves: a 'moving' record, some chunks (even a live one) in trash.
    const batch = '20261126T000000000Z-deadbeef';
    await repo.store.put(
      trashBatchKey(batch),
      Buffer.from(
        JSON.stringify({
          batchId: batch,
          state: 'moving',
          createdAt: new Date().toISOString(),
          liveSessions: [],
        }),
      ),
    );
    const liveOne = [...keepIds][0];
    for (const id of [liveOne, goneIds[0]]) await repo.store.rename(chunkKey(id), trashChunkKey(batch, id));
    await expectRestores(repo, keep.id, kept); // readable from trash meanwhile

    const first = await repo.collectGarbage({ safetyWindowMs: 0 });
    expect(first.restoredChunks).toBe(1);
    expect(first.batchesKeptForWriters).toBe(1);
    expect(await repo.store.exists(trashChunkKey(batch, goneIds[0]))).toBe(true);
    const second = await repo.collectGarbage({ safetyWindowMs: 0 });
    expect(second.purgedChunks).toBe(1);
    expect(await repo.store.exists(trashBatchKey(batch))).toBe(false);
    expect(await chunkSet(repo)).toEqual(keepIds);
    await expectRestores(repo, keep.id, kept);
  });

  it('a writer whose marker lapsed refuses to commit', async () => {
    const writer = await repo.createRestorePointWriter(
      { vm: { uuid: 'vm', name: 'vm' } },
      { sessionTtlMs: 200 },
    );
    const disk = patternedDisk('gc-lapse', 3);
    await writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
    // The process stalls (no renewal) for longer than TTL / 2: GC may have judged it dead.
    const until = Date.now() + 300;
    while (Date.now() < until) {
      // busy: the heartbeat timer cannot run
    }
    await sleep(100);
    await expect(writer.commit()).rejects.toMatchObject({ code: 'SESSION_EXPIRED' });
    expect(await repo.listRestorePointIds()).toEqual([]);
    await writer.abort();
  });

  it('holds the remote lease: a second GC at the same time is refused', async () => {
    await backup(repo, 'vm', patternedDisk('gc-lease', 4));
    const lease = await repo.store.acquireLease('repository-gc', { owner: 'other-gc', ttlMs: 60_000 });
    await expect(repo.collectGarbage()).rejects.toMatchObject({ code: 'LOCKED' });
    await lease.release();
    await expect(repo.collectGarbage()).resolves.toMatchObject({ restorePoints: 1 });
  });
});
