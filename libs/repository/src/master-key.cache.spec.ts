import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { scratchDir } from '@haven/testing';
import type { RepositoryConfig } from './format/repository.config';
import { MasterKeyCache, type MasterKeyUnwrap } from './master-key.cache';
import { initRepository, openRepository } from './repository';
import { unwrapMasterKey } from './repository.keys';
import { blocksOf, localRemote, patternedDisk } from './testing/disk-pattern.fixture';

const FAST_KDF = { N: 1024 };

/** The real unwrap (scrypt + key check), counted. */
function countedUnwrap(): { unwrap: MasterKeyUnwrap; derivations: () => number } {
  let derivations = 0;
  return {
    unwrap: (remote, secret, config) => {
      derivations++;
      return unwrapMasterKey(remote, secret, config);
    },
    derivations: () => derivations,
  };
}

/**
 * A repository made under `secret` in `path` (its key kept in a cache of its own), and an empty
 * cache whose unwraps are counted, for the opens under test.
 */
async function repositoryAndCountingCache(path: string, secret: string) {
  const store = localRemote(path);
  await initRepository(store, { key: secret, kdf: FAST_KDF, keyCache: new MasterKeyCache() });
  const counted = countedUnwrap();
  return { store, counted, cache: new MasterKeyCache({ unwrap: counted.unwrap }) };
}

async function storedConfig(path: string): Promise<RepositoryConfig> {
  return JSON.parse(await readFile(join(path, 'repository.json'), 'utf8')) as RepositoryConfig;
}

describe('MasterKeyCache', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  beforeEach(async () => (dir = await scratchDir('haven-key-cache-')));
  afterEach(() => dir.cleanup());

  it('derives once per repository and secret: later opens reuse the key', async () => {
    const store = localRemote(dir.path);
    const repo = await initRepository(store, { key: 'pass', kdf: FAST_KDF, keyCache: new MasterKeyCache() });
    const writer = await repo.createRestorePointWriter({ vm: { uuid: 'vm-1', name: 'web' } });
    const disk = patternedDisk('cache', 2);
    await writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
    const manifest = await writer.commit();

    const counted = countedUnwrap();
    const cache = new MasterKeyCache({ unwrap: counted.unwrap });
    await openRepository(store, { key: 'pass', keyCache: cache });
    const again = await openRepository(store, { key: 'pass', keyCache: cache });
    expect(counted.derivations()).toBe(1);
    // The key from memory opens the data.
    const point = await again.openRestorePoint(manifest.id);
    for (const [index, data] of disk.blocks)
      expect((await point.disk('xvda').readBlock(index)).equals(data)).toBe(true);
  });

  it('shares one derivation between opens that start together', async () => {
    const { store, counted, cache } = await repositoryAndCountingCache(dir.path, 'pass');
    await Promise.all([1, 2, 3].map(() => openRepository(store, { key: 'pass', keyCache: cache })));
    expect(counted.derivations()).toBe(1);
  });

  it('gives no key for another secret, and never keeps a wrong one', async () => {
    const { store, counted, cache } = await repositoryAndCountingCache(dir.path, 'right');
    await openRepository(store, { key: 'right', keyCache: cache });
    await expect(openRepository(store, { key: 'wrong', keyCache: cache })).rejects.toMatchObject({
      code: 'WRONG_KEY',
    });
    await expect(openRepository(store, { key: 'wrong', keyCache: cache })).rejects.toMatchObject({
      code: 'WRONG_KEY',
    });
    // Each wrong attempt ran the real check; the right key stayed alone in memory.
    expect(counted.derivations()).toBe(3);
    expect(cache.size).toBe(1);
  });

  it('misses when repository.json changed: an altered block fails the key check again', async () => {
    const { store, counted, cache } = await repositoryAndCountingCache(dir.path, 'k');
    await openRepository(store, { key: 'k', keyCache: cache });
    const config = await storedConfig(dir.path);
    for (const alter of [
      (c: RepositoryConfig) => c.encryption !== null && (c.encryption.cipher = 'chacha20-poly1305'),
      (c: RepositoryConfig) =>
        c.encryption !== null && (c.encryption.keyCheck = Buffer.alloc(32).toString('base64')),
      (c: RepositoryConfig) => (c.repositoryId = '00000000-0000-4000-8000-000000000000'),
    ]) {
      const altered = structuredClone(config);
      alter(altered);
      await store.put('repository.json', Buffer.from(JSON.stringify(altered)));
      await expect(openRepository(store, { key: 'k', keyCache: cache })).rejects.toMatchObject({
        code: 'WRONG_KEY',
      });
    }
    expect(counted.derivations()).toBe(4);
  });

  it('after a key change, the old secret fails and the new one opens without a derivation', async () => {
    const store = localRemote(dir.path);
    const counted = countedUnwrap();
    const cache = new MasterKeyCache({ unwrap: counted.unwrap });
    const repo = await initRepository(store, { key: 'old', kdf: FAST_KDF, keyCache: cache });
    await openRepository(store, { key: 'old', keyCache: cache });
    expect(counted.derivations()).toBe(0);
    await repo.changeKey('new');
    await expect(openRepository(store, { key: 'old', keyCache: cache })).rejects.toMatchObject({
      code: 'WRONG_KEY',
    });
    expect(counted.derivations()).toBe(1);
    expect((await openRepository(store, { key: 'new', keyCache: cache })).id).toBe(repo.id);
    expect(counted.derivations()).toBe(1);
  });

  it('drops a key after its idle time and the least recently used beyond its capacity', async () => {
    for (const name of ['a', 'b', 'c']) await mkdir(join(dir.path, name));
    const stores = ['a', 'b', 'c'].map((name) => localRemote(join(dir.path, name)));
    const configs: RepositoryConfig[] = [];
    for (const [rank, store] of stores.entries()) {
      await initRepository(store, { key: 'k', kdf: FAST_KDF, keyCache: new MasterKeyCache() });
      configs.push(await storedConfig(join(dir.path, ['a', 'b', 'c'][rank] ?? '')));
    }
    let now = 0;
    const counted = countedUnwrap();
    const cache = new MasterKeyCache({ unwrap: counted.unwrap, capacity: 2, idleMs: 1000, now: () => now });
    const open = (rank: number) => cache.unwrap(stores[rank]?.name ?? '', 'k', configs[rank]);

    await open(0);
    now = 999;
    await open(0);
    expect(counted.derivations()).toBe(1);
    now = 1999;
    await open(0);
    expect(counted.derivations()).toBe(2);

    await open(1);
    await open(0); // 1 is now the least recently used
    await open(2);
    expect(cache.size).toBe(2);
    const before = counted.derivations();
    await open(0);
    await open(2);
    expect(counted.derivations()).toBe(before);
    await open(1);
    expect(counted.derivations()).toBe(before + 1);
  });

  it('hands out copies: a caller scribbling on its key does not change the kept one', async () => {
    const store = localRemote(dir.path);
    await initRepository(store, { key: 'k', kdf: FAST_KDF, keyCache: new MasterKeyCache() });
    const config = await storedConfig(dir.path);
    const cache = new MasterKeyCache();
    const first = await cache.unwrap(store.name, 'k', config);
    const kept = Buffer.from(first);
    first.fill(0);
    expect((await cache.unwrap(store.name, 'k', config)).equals(kept)).toBe(true);
  });
});
