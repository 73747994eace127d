import { createHash } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import localRemote from '@haven/remote-local';
import {
  chunkKey,
  DAMAGE_KEY,
  initRepository,
  type Repository,
  type RestorePointReader,
} from '@haven/repository';
import { scratchDir } from '@haven/testing';
import { inspectBase, isDamaged } from './base.inspection';

const BLOCK = 2 * 1024 * 1024;

/** Distinct pseudo-random 2 MiB blocks, so no chunk is shared between the two disks. */
function block(seed: string): Buffer {
  const out = Buffer.alloc(BLOCK);
  for (let offset = 0; offset < BLOCK; offset += 32)
    createHash('sha256').update(`${seed}/${offset}`).digest().copy(out, offset);
  return out;
}

describe('checking a base restore point before a delta', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let repository: Repository;
  let reader: RestorePointReader;
  const warnings: string[] = [];
  const warn = (message: string) => warnings.push(message);

  beforeEach(async () => {
    dir = await scratchDir('haven-base-check-');
    const store = await localRemote.create({ path: dir.path }, { name: 'base-check' });
    repository = await initRepository(store, { compression: { codec: 'none' } });
    const writer = await repository.createRestorePointWriter({ vm: { uuid: 'vm', name: 'vm' } });
    for (const key of ['0', '1'])
      await writer.writeDisk(
        { key, virtualSize: 3 * BLOCK },
        [0, 2].map((index) => ({ index, data: block(`${key}/${index}`) })),
      );
    reader = await repository.openRestorePoint((await writer.commit()).id);
    warnings.length = 0;
  });
  afterEach(async () => {
    await repository.store.close();
    await dir.cleanup();
  });

  const chunkOf = (key: string, index: number) => reader.disk(key).chunkId(index)!;

  it('finds nothing wrong with a sound restore point, either way', async () => {
    for (const mode of ['existence', 'full'] as const)
      expect(isDamaged(await inspectBase(repository, reader, mode, warn))).toBe(false);
  });

  it('existence: names the disk whose chunk is missing, and the chunk', async () => {
    const chunk = chunkOf('1', 2);
    await rm(join(dir.path, chunkKey(chunk)));
    const damage = await inspectBase(repository, reader, 'existence', warn);
    expect([...(damage.disks as Set<string>)]).toEqual(['1']);
    expect([...damage.chunks]).toEqual([chunk]);
    expect(damage.reasons).toEqual([`chunk ${chunk} is missing`]);
  });

  it('existence: a missing chunk both disks hold names both, once; each way of asking finds the same', async () => {
    const writer = await repository.createRestorePointWriter({ vm: { uuid: 'vm', name: 'vm' } });
    const shared = block('shared');
    for (const key of ['0', '1'])
      await writer.writeDisk({ key, virtualSize: 3 * BLOCK }, [
        { index: 0, data: shared },
        { index: 1, data: block(`${key}/own`) },
      ]);
    const point = await repository.openRestorePoint((await writer.commit()).id);
    const chunk = point.disk('0').chunkId(0)!;
    expect(point.disk('1').chunkId(0)).toBe(chunk);
    await rm(join(dir.path, chunkKey(chunk)));
    for (const existenceMethod of ['auto', 'per-chunk', 'listing'] as const) {
      const damage = await inspectBase(repository, point, 'existence', warn, undefined, { existenceMethod });
      expect([...(damage.disks as Set<string>)].sort()).toEqual(['0', '1']);
      expect([...damage.chunks]).toEqual([chunk]);
      expect(damage.reasons).toEqual([`chunk ${chunk} is missing`]);
    }
  });

  it('existence through one listing of chunks/ (a base past the per-chunk limit) finds the same', async () => {
    const chunk = chunkOf('0', 0);
    await rm(join(dir.path, chunkKey(chunk)));
    const damage = await inspectBase(repository, reader, 'existence', warn, undefined, {
      existenceMethod: 'listing',
    });
    expect([...(damage.disks as Set<string>)]).toEqual(['0']);
    expect([...damage.chunks]).toEqual([chunk]);
  });

  it('a flipped byte passes the existence check but not the full one', async () => {
    const chunk = chunkOf('0', 0);
    const path = join(dir.path, chunkKey(chunk));
    const bytes = await readFile(path);
    bytes[bytes.length - 7] = (bytes[bytes.length - 7] ?? 0) ^ 0x01;
    await writeFile(path, bytes);
    expect(isDamaged(await inspectBase(repository, reader, 'existence', warn))).toBe(false);
    const damage = await inspectBase(repository, reader, 'full', warn);
    expect([...(damage.disks as Set<string>)]).toEqual(['0']);
    expect([...damage.chunks]).toEqual([chunk]);
    // The full check is a verify of that restore point: it recorded what it found.
    expect(JSON.parse(await readFile(join(dir.path, DAMAGE_KEY), 'utf8'))).toMatchObject({
      restorePoints: [reader.manifest.id],
      chunks: [chunk],
    });
    // So the cheap check sees it from now on.
    const recorded = await inspectBase(repository, reader, 'existence', warn);
    expect([...(recorded.disks as Set<string>)]).toEqual(['0']);
  });

  it('a record naming the restore point but none of its chunks damages every disk', async () => {
    await writeFile(
      join(dir.path, DAMAGE_KEY),
      JSON.stringify({
        format: 'haven-damage',
        version: 1,
        updatedAt: '',
        restorePoints: [reader.manifest.id],
        chunks: [],
      }),
    );
    expect((await inspectBase(repository, reader, 'existence', warn)).disks).toBe('all');
  });

  it('an unreadable damage record is a warning, not a failed backup', async () => {
    await writeFile(join(dir.path, DAMAGE_KEY), '{broken');
    expect(isDamaged(await inspectBase(repository, reader, 'existence', warn))).toBe(false);
    expect(warnings).toEqual([expect.stringMatching(/damage\.json .* is not a damage record/)]);
  });
});
