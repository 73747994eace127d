import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { scratchDir } from '@haven/testing';
import { DAMAGE_KEY, readDamageRecord } from './damage.record';
import { chunkKey } from './format/repository.layout';
import { initRepository, type Repository } from './repository';
import { blocksOf, localRemote, patternedDisk, type DiskPattern } from './testing/disk-pattern.fixture';

async function backup(repo: Repository, vm: string, disk: DiskPattern) {
  const writer = await repo.createRestorePointWriter({ vm: { uuid: vm, name: vm } });
  await writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
  return writer.commit();
}

describe('verify of chosen restore points, and the damage record', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let repo: Repository;
  beforeEach(async () => {
    dir = await scratchDir('haven-damage-');
    repo = await initRepository(localRemote(dir.path));
  });
  afterEach(() => dir.cleanup());

  async function flipByteOf(chunkId: string): Promise<Buffer> {
    const path = join(dir.path, chunkKey(chunkId));
    const original = await readFile(path);
    const bytes = Buffer.from(original);
    bytes[bytes.length - 20] = (bytes[bytes.length - 20] ?? 0) ^ 0x01;
    await writeFile(path, bytes);
    return original;
  }

  it('checks only the chunks of the restore points named, and records what it found', async () => {
    const web = await backup(repo, 'web', patternedDisk('web', 8));
    const db = await backup(repo, 'db', patternedDisk('db', 6));
    const dbReader = (await repo.openRestorePoint(db.id)).disk('xvda');
    const dbChunk = dbReader.chunkId(dbReader.allocatedBlocks[0])!;
    const original = await flipByteOf(dbChunk);

    // The web restore point alone: sound (the damaged chunk is not one of its own).
    const webOnly = await repo.verify({ restorePoints: [web.id] });
    const webChunks = new Set((await repo.openRestorePoint(web.id)).disk('xvda').index.chunkIds());
    expect(webOnly).toMatchObject({ ok: true, checkedChunks: webChunks.size });
    expect(await readDamageRecord(repo)).toMatchObject({ restorePoints: [], chunks: [] });

    const dbOnly = await repo.verify({ restorePoints: [db.id] });
    expect(dbOnly.ok).toBe(false);
    expect(dbOnly.brokenRestorePoints.map((point) => point.id)).toEqual([db.id]);
    expect(await readDamageRecord(repo)).toMatchObject({ restorePoints: [db.id], chunks: [dbChunk] });

    // A restore point asked for that does not exist is reported, not skipped.
    const gone = '20200101T000000000Z-0123456789ab';
    expect((await repo.verify({ restorePoints: [gone], record: false })).brokenRestorePoints).toMatchObject([
      { id: gone, reasons: [expect.stringMatching(/does not exist/)] },
    ]);

    // A partial verify never clears the record; a complete one that finds nothing removes it.
    await writeFile(join(dir.path, chunkKey(dbChunk)), original);
    await repo.verify({ restorePoints: [db.id] });
    expect((await readDamageRecord(repo)).restorePoints).toEqual([db.id]);
    await repo.verify();
    expect(await readDamageRecord(repo)).toMatchObject({ restorePoints: [], chunks: [] });
    await expect(readFile(join(dir.path, DAMAGE_KEY))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses a damage record it cannot read, naming the object', async () => {
    await writeFile(join(dir.path, DAMAGE_KEY), 'not json');
    await expect(readDamageRecord(repo)).rejects.toThrow(/damage\.json .* is not a damage record/);
  });
});
