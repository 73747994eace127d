import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { scratchDir } from '@haven/testing';
import type { CompressionSetting } from './codecs/chunk-codec';
import { initRepository, openRepository, type Repository } from './repository';
import type { WriteProgress } from './restore-point.writer';
import {
  BLOCK,
  blocksOf,
  changedDisk,
  collect,
  isZero,
  localRemote,
  patternedDisk,
  rawImage,
  seededBytes,
} from './testing/disk-pattern.fixture';

/** Every file under `root` (none when it does not exist), sorted. */
async function filesUnder(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

/** Non-zero blocks of `disk` whose content an earlier block of it already has (reused in-session). */
function sessionRepeats(disk: ReturnType<typeof patternedDisk>): number {
  const seen = new Set<string>();
  let repeats = 0;
  for (const [, data] of [...disk.blocks].sort(([a], [b]) => a - b)) {
    if (isZero(data)) continue;
    const key = data.toString('base64');
    if (seen.has(key)) repeats++;
    else seen.add(key);
  }
  return repeats;
}

describe('restore point writer', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let repo: Repository;
  beforeEach(async () => {
    dir = await scratchDir('haven-writer-');
    repo = await initRepository(localRemote(dir.path));
  });
  afterEach(() => dir.cleanup());

  it('lets several writers (separate repository handles, as on separate machines) write at once', async () => {
    const template = patternedDisk('clone', 16);
    const clones = Array.from({ length: 4 }, (_, i) => changedDisk(template, `clone-${i}`, 2));
    const results = await Promise.all(
      clones.map(async (disk, i) => {
        const handle = await openRepository(localRemote(dir.path, `machine-${i}`));
        const writer = await handle.createRestorePointWriter(
          { vm: { uuid: `vm-${i}`, name: `clone ${i}` } },
          { knownChunks: i % 2 === 0 ? 'list' : 'none' },
        );
        const entry = await writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
        return { manifest: await writer.commit(), entry, disk };
      }),
    );
    for (const { manifest, disk } of results) {
      expect(
        (await collect((await repo.openRestorePoint(manifest.id)).disk('xvda').createReadStream())).equals(
          rawImage(disk),
        ),
      ).toBe(true);
    }
    // Shared template blocks are stored once whatever writer won the race.
    const distinct = new Set<string>();
    for (const { disk } of results)
      for (const data of disk.blocks.values())
        if (!data.equals(Buffer.alloc(data.length))) distinct.add(data.toString('base64'));
    expect((await repo.chunks.listing()).size).toBe(distinct.size);
    expect((await repo.verify()).ok).toBe(true);
  });

  it("skips the chunks a listing of the repository found, without sealing them again ('list')", async () => {
    const disk = patternedDisk('listed', 10, 3000);
    const first = await repo.createRestorePointWriter({ vm: { uuid: 'vm-a', name: 'a' } });
    const stored = await first.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
    await first.commit();
    expect(stored.uploadedChunks).toBeGreaterThan(0);
    const sealed = jest.spyOn(repo.chunks, 'seal');
    try {
      const second = await repo.createRestorePointWriter(
        { vm: { uuid: 'vm-b', name: 'b' } },
        { knownChunks: 'list' },
      );
      const entry = await second.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
      const manifest = await second.commit();
      expect(entry.uploadedChunks).toBe(0);
      expect(entry.reusedChunks).toBe(stored.uploadedChunks + stored.reusedChunks);
      expect(sealed).not.toHaveBeenCalled();
      const raw = await collect((await repo.openRestorePoint(manifest.id)).disk('xvda').createReadStream());
      expect(raw.equals(rawImage(disk))).toBe(true);
    } finally {
      sealed.mockRestore();
    }
  });

  it('learns existing chunks from a base restore point instead of listing', async () => {
    const disk = patternedDisk('base', 10);
    const first = await repo.createRestorePointWriter({ vm: { uuid: 'vm', name: 'vm' } });
    await first.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
    const base = await first.commit();
    const next = changedDisk(disk, 'base-next', 2);
    const writer = await repo.createRestorePointWriter(
      { vm: { uuid: 'vm', name: 'vm' } },
      { knownChunks: { restorePoints: [base.id] } },
    );
    const entry = await writer.writeDisk({ key: 'xvda', virtualSize: next.virtualSize }, blocksOf(next));
    const manifest = await writer.commit();
    expect(entry.reusedChunks).toBeGreaterThan(0);
    expect(entry.uploadedChunks).toBeLessThanOrEqual(2);
    expect(
      (await collect((await repo.openRestorePoint(manifest.id)).disk('xvda').createReadStream())).equals(
        rawImage(next),
      ),
    ).toBe(true);
  });

  describe.each([
    ['a listing of the repository', () => 'list' as const],
    ['the chunks of a base', (base: string) => ({ restorePoints: [base] })],
  ])('past knownChunksMax, with %s', (_, knownChunks) => {
    it('keeps no ids and asks the remote whether each chunk exists before sealing it', async () => {
      const disk = patternedDisk('past-max', 10, 3000);
      const first = await repo.createRestorePointWriter({ vm: { uuid: 'vm-a', name: 'a' } });
      const stored = await first.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
      const base = await first.commit();
      const next = changedDisk(disk, 'past-max-next', 2);
      const asked = jest.spyOn(repo.chunks, 'exists');
      const sealed = jest.spyOn(repo.chunks, 'seal');
      try {
        const writer = await repo.createRestorePointWriter(
          { vm: { uuid: 'vm-b', name: 'b' } },
          { knownChunks: knownChunks(base.id), knownChunksMax: stored.uploadedChunks - 1 },
        );
        const entry = await writer.writeDisk({ key: 'xvda', virtualSize: next.virtualSize }, blocksOf(next));
        const manifest = await writer.commit();
        // Only the changed blocks' chunks were sealed and sent; every other chunk was found stored.
        expect(entry.uploadedChunks).toBeGreaterThan(0);
        expect(entry.uploadedChunks).toBeLessThanOrEqual(2);
        expect(sealed).toHaveBeenCalledTimes(entry.uploadedChunks);
        expect(entry.reusedChunks).toBeGreaterThan(0);
        // One question per distinct chunk (none for a chunk this session already had).
        expect(asked).toHaveBeenCalledTimes(entry.uploadedChunks + entry.reusedChunks - sessionRepeats(next));
        const raw = await collect((await repo.openRestorePoint(manifest.id)).disk('xvda').createReadStream());
        expect(raw.equals(rawImage(next))).toBe(true);
      } finally {
        asked.mockRestore();
        sealed.mockRestore();
      }
    });

    it('asks nothing while the ids fit', async () => {
      const disk = patternedDisk('under-max', 6);
      const first = await repo.createRestorePointWriter({ vm: { uuid: 'vm-a', name: 'a' } });
      const stored = await first.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
      const base = await first.commit();
      const asked = jest.spyOn(repo.chunks, 'exists');
      try {
        const writer = await repo.createRestorePointWriter(
          { vm: { uuid: 'vm-b', name: 'b' } },
          { knownChunks: knownChunks(base.id), knownChunksMax: stored.allocatedBlocks },
        );
        const entry = await writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
        await writer.commit();
        expect(entry.uploadedChunks).toBe(0);
        expect(asked).not.toHaveBeenCalled();
      } finally {
        asked.mockRestore();
      }
    });
  });

  it('makes a full restore point from a delta (changed blocks only) over a base', async () => {
    const disk = patternedDisk('delta', 12);
    const first = await repo.createRestorePointWriter({ vm: { uuid: 'vm', name: 'vm' } });
    await first.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
    const base = await first.commit();
    const next = changedDisk(disk, 'delta-next', 2);
    const zeroed = [...disk.blocks.entries()].find(
      ([i, data]) => !isZero(data) && next.blocks.get(i) === data,
    )![0];
    next.blocks.set(zeroed, Buffer.alloc(BLOCK));
    const delta = [...next.blocks.entries()]
      .filter(([i, data]) => data !== disk.blocks.get(i))
      .map(([index, data]) => ({ index, data }));
    const baseReader = (await repo.openRestorePoint(base.id)).disk('xvda');
    const writer = await repo.createRestorePointWriter({ vm: { uuid: 'vm', name: 'vm' } });
    const entry = await writer.writeDisk({ key: 'xvda', virtualSize: next.virtualSize }, delta, {
      base: baseReader,
    });
    const manifest = await writer.commit();
    expect(entry).toMatchObject({ base: base.id, uploadedChunks: expect.any(Number) });
    expect(entry.uploadedChunks).toBeLessThanOrEqual(2);
    expect(entry.inheritedBlocks).toBe(
      baseReader.allocatedBlocks.length -
        delta.filter((b) => baseReader.index.get(b.index) !== undefined).length,
    );
    expect(
      (await collect((await repo.openRestorePoint(manifest.id)).disk('xvda').createReadStream())).equals(
        rawImage(next),
      ),
    ).toBe(true);

    // A base that expired before the writer started is refused.
    await repo.deleteRestorePoint(base.id);
    const late = await repo.createRestorePointWriter({ vm: { uuid: 'vm', name: 'vm' } });
    await expect(
      late.writeDisk({ key: 'xvda', virtualSize: next.virtualSize }, delta, { base: baseReader }),
    ).rejects.toMatchObject({ code: 'RESTORE_POINT_NOT_FOUND' });
    await late.abort();
  });

  it("compresses the chunks it uploads as its own setting asks, not only as the repository's", async () => {
    // The repository was started with zstd; writers of other jobs ask for gzip, then none.
    const written = new Set<string>();
    const codecsOfNewChunks = async (): Promise<Set<number>> => {
      const codecs = new Set<number>();
      for (const path of await filesUnder(join(dir.path, 'chunks'))) {
        if (written.has(path)) continue;
        written.add(path);
        codecs.add((await readFile(path)).readUInt8(5));
      }
      return codecs;
    };
    const backUp = async (seed: string, compression?: CompressionSetting): Promise<Set<number>> => {
      const disk = patternedDisk(seed, 6);
      const writer = await repo.createRestorePointWriter(
        { vm: { uuid: seed, name: seed } },
        compression === undefined ? {} : { compression },
      );
      await writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
      const manifest = await writer.commit();
      const restored = await collect(
        (await repo.openRestorePoint(manifest.id)).disk('xvda').createReadStream(),
      );
      expect(restored.equals(rawImage(disk))).toBe(true);
      return codecsOfNewChunks();
    };
    // Codec ids in the object header: 0 none (also incompressible blocks), 1 zstd, 2 gzip.
    expect([...(await backUp('gzip-job', { codec: 'gzip', level: 1 }))].sort()).toEqual([0, 2]);
    expect([...(await backUp('default-job'))].sort()).toEqual([0, 1]);
    expect([...(await backUp('plain-job', { codec: 'none' }))].sort()).toEqual([0]);
  });

  it('refuses a compression setting out of range before it writes anything', async () => {
    const before = await filesUnder(dir.path);
    await expect(
      repo.createRestorePointWriter(
        { vm: { uuid: 'vm', name: 'vm' } },
        { compression: { codec: 'gzip', level: 12 } },
      ),
    ).rejects.toThrow('compression level 12 is out of range for gzip; use 1..9');
    expect(await filesUnder(dir.path)).toEqual(before);
  });

  it('reports progress and skips chunks already uploaded in the same session across disks', async () => {
    const disk = patternedDisk('progress', 8);
    const progress: WriteProgress[] = [];
    const writer = await repo.createRestorePointWriter(
      { vm: { uuid: 'vm', name: 'vm' } },
      { onProgress: (p) => progress.push(p), expectedBytes: 2 * disk.virtualSize },
    );
    const a = await writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
    const b = await writer.writeDisk({ key: 'xvdb', virtualSize: disk.virtualSize }, blocksOf(disk));
    await writer.commit();
    expect(a.uploadedChunks).toBeGreaterThan(0);
    expect(b.uploadedChunks).toBe(0);
    expect(b.reusedChunks).toBe(b.allocatedBlocks);
    const last = progress.at(-1)!;
    expect(last.bytesTotal).toBe(2 * disk.virtualSize);
    expect(last.bytesDone).toBe([...disk.blocks.values()].reduce((sum, data) => sum + data.length, 0) * 2);
    expect(progress.map((p) => p.bytesDone)).toEqual(
      [...progress.map((p) => p.bytesDone)].sort((x, y) => x - y),
    );
  });

  it('remembers at most sessionChunksMax new ids: a repeat past them is sealed and offered again', async () => {
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map<Buffer>((seed) => seededBytes(`remember-${seed}`, BLOCK));
    const sealsOf = async (
      order: Buffer[],
      options: { knownChunks: 'none' | 'list'; sessionChunksMax?: number },
    ): Promise<number> => {
      const seal = jest.spyOn(repo.chunks, 'seal');
      try {
        const writer = await repo.createRestorePointWriter(
          { vm: { uuid: 'vm-remember', name: 'vm' } },
          options,
        );
        await writer.writeDisk(
          { key: 'xvda', virtualSize: order.length * BLOCK },
          order.map((data, index) => ({ index, data })),
        );
        const manifest = await writer.commit();
        const disk = (await repo.openRestorePoint(manifest.id)).disk('xvda');
        for (const [index, data] of order.entries())
          expect((await disk.readBlock(index)).equals(data)).toBe(true);
        return seal.mock.calls.length;
      } finally {
        seal.mockRestore();
      }
    };
    const order = [a, b, c, a, c, b, c];
    // Every id remembered: one seal each.
    expect(await sealsOf(order, { knownChunks: 'none' })).toBe(3);
    // a and b remembered; c, past the cap, sealed each time it comes.
    expect(await sealsOf(order, { knownChunks: 'none', sessionChunksMax: 2 })).toBe(5);
    // Chunks the listing found take no room: a and b are stored, d is the one id remembered.
    expect(await sealsOf([a, b, d, a, d, b, d], { knownChunks: 'list', sessionChunksMax: 1 })).toBe(1);
  });

  it('rejects bad blocks with the block and disk named', async () => {
    const writer = await repo.createRestorePointWriter({ vm: { uuid: 'vm', name: 'vm' } });
    await expect(
      writer.writeDisk({ key: 'xvda', virtualSize: 2 * BLOCK }, [{ index: 2, data: Buffer.alloc(BLOCK, 1) }]),
    ).rejects.toThrow(/block 2 is outside disk "xvda"/);
    const second = await repo.createRestorePointWriter({ vm: { uuid: 'vm', name: 'vm' } });
    await expect(
      second.writeDisk({ key: 'xvda', virtualSize: 2 * BLOCK }, [{ index: 0, data: Buffer.alloc(100, 1) }]),
    ).rejects.toMatchObject({ code: 'INVALID_BLOCK', context: { block: 0, disk: 'xvda' } });
    const third = await repo.createRestorePointWriter({ vm: { uuid: 'vm', name: 'vm' } });
    const twice = [
      { index: 1, data: Buffer.alloc(BLOCK, 1) },
      { index: 1, data: Buffer.alloc(BLOCK, 2) },
    ];
    await expect(third.writeDisk({ key: 'xvda', virtualSize: 2 * BLOCK }, twice)).rejects.toThrow(
      /given twice/,
    );
    for (const w of [writer, second, third]) await w.abort();
    expect(await repo.listRestorePointIds()).toEqual([]);
  });

  it('honours an abort signal between blocks', async () => {
    const controller = new AbortController();
    const writer = await repo.createRestorePointWriter(
      { vm: { uuid: 'vm', name: 'vm' } },
      { signal: controller.signal },
    );
    const disk = patternedDisk('abort', 8);
    let yielded = 0;
    const source = (function* () {
      for (const block of blocksOf(disk)) {
        if (++yielded === 3) controller.abort();
        yield block;
      }
    })();
    await expect(
      writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, source),
    ).rejects.toMatchObject({ name: 'AbortError' });
    expect(yielded).toBeLessThan(disk.blocks.size);
    await writer.abort();
    expect(await repo.listRestorePointIds()).toEqual([]);
  });
});
