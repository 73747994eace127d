import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { scratchDir } from '@haven/testing';
import { chunkKey } from './format/repository.layout';
import { initRepository, type Repository } from './repository';
import { ChunkIntegrityError } from './repository.errors';
import {
  blocksOf,
  collect,
  localRemote,
  patternedDisk,
  rawImage,
  type DiskPattern,
} from './testing/disk-pattern.fixture';

async function backup(repo: Repository, vm: string, disk: DiskPattern) {
  const writer = await repo.createRestorePointWriter({ vm: { uuid: vm, name: vm } });
  await writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
  return writer.commit();
}

describe.each([{ key: undefined }, { key: 'secret' }])('verify and damaged chunks (key: $key)', ({ key }) => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let repo: Repository;
  const shared = patternedDisk('shared', 8);
  const own = patternedDisk('own', 6);
  beforeEach(async () => {
    dir = await scratchDir('haven-verify-');
    repo = await initRepository(localRemote(dir.path), key !== undefined ? { key, kdf: { N: 1024 } } : {});
  });
  afterEach(() => dir.cleanup());

  it('passes on a healthy repository', async () => {
    await backup(repo, 'web', shared);
    const report = await repo.verify();
    expect(report).toMatchObject({
      ok: true,
      restorePoints: 1,
      damagedChunks: [],
      missingChunks: [],
      brokenRestorePoints: [],
    });
    expect(report.checkedChunks).toBe(report.chunks);
  });

  it('names a flipped byte, every restore point it breaks, and fails their restores with that reason', async () => {
    const web = await backup(repo, 'web', shared);
    const db = await backup(repo, 'db', own);
    // Damage a chunk only the web restore point uses.
    const webReader = (await repo.openRestorePoint(web.id)).disk('xvda');
    const block = webReader.allocatedBlocks[2];
    const chunkId = webReader.chunkId(block)!;
    const path = join(dir.path, chunkKey(chunkId));
    const bytes = await readFile(path);
    bytes[Math.floor(bytes.length / 2)] ^= 0x01;
    await writeFile(path, bytes);

    const report = await repo.verify();
    expect(report.ok).toBe(false);
    expect(report.damagedChunks).toHaveLength(1);
    expect(report.damagedChunks[0]).toMatchObject({ chunkId, key: chunkKey(chunkId) });
    expect(report.damagedChunks[0].restorePoints).toEqual([expect.stringContaining(web.id)]);
    expect(report.brokenRestorePoints.map((p) => p.id)).toEqual([web.id]);
    expect(report.brokenRestorePoints[0].label).toContain('web');

    const error: unknown = await webReader.readBlock(block).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ChunkIntegrityError);
    expect(error).toMatchObject({ code: 'CHUNK_DAMAGED', chunkId });
    expect((error as Error).message).toContain(web.id);
    await expect(
      collect((await repo.openRestorePoint(web.id)).disk('xvda').createReadStream()),
    ).rejects.toMatchObject({ code: 'CHUNK_DAMAGED', chunkId });
    // The other restore point still restores.
    expect(
      (await collect((await repo.openRestorePoint(db.id)).disk('xvda').createReadStream())).equals(
        rawImage(own),
      ),
    ).toBe(true);
  });

  it('names a missing chunk and the restore points that need it', async () => {
    const web = await backup(repo, 'web', shared);
    const web2 = await backup(repo, 'web', shared);
    const reader = (await repo.openRestorePoint(web.id)).disk('xvda');
    const block = reader.allocatedBlocks[0];
    const chunkId = reader.chunkId(block)!;
    await rm(join(dir.path, chunkKey(chunkId)));
    const report = await repo.verify({ sample: 0.5 });
    expect(report.missingChunks.map((c) => c.chunkId)).toEqual([chunkId]);
    expect(report.brokenRestorePoints.map((p) => p.id).sort()).toEqual([web.id, web2.id].sort());
    // Each names the chunk once, and the chunk names both.
    for (const point of report.brokenRestorePoints)
      expect(point.reasons).toEqual([`chunk ${chunkId} is missing`]);
    expect(report.missingChunks[0]?.restorePoints).toEqual(
      [web.id, web2.id].sort().map((id) => expect.stringContaining(id)),
    );
    expect(report.checkedChunks).toBe(Math.round(report.chunks * 0.5));
    // A verify of one restore point checks the chunks it references, and names only it.
    const one = await repo.verify({ restorePoints: [web2.id], record: false });
    expect(one.brokenRestorePoints.map((p) => p.id)).toEqual([web2.id]);
    expect(one.checkedChunks).toBe(new Set(reader.allocatedBlocks.map((b) => reader.chunkId(b))).size - 1);
    await expect(reader.readBlock(block)).rejects.toMatchObject({ code: 'CHUNK_MISSING', chunkId });
  });

  it('reports a damaged index as a broken restore point', async () => {
    const web = await backup(repo, 'web', shared);
    const path = join(dir.path, `restore-points/${web.id}/disk-0.index`);
    const bytes = await readFile(path);
    bytes[bytes.length - 3] ^= 0x40;
    await writeFile(path, bytes);
    const report = await repo.verify();
    expect(report.brokenRestorePoints).toEqual([
      expect.objectContaining({
        id: web.id,
        reasons: [expect.stringMatching(/index of disk xvda .* is damaged/)],
      }),
    ]);
    await expect(repo.openRestorePoint(web.id)).rejects.toMatchObject({ code: 'INDEX_DAMAGED' });
  });
});
