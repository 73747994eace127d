import { readdir, readFile, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { basename, join } from 'node:path';
import { blake3 } from '@napi-rs/blake-hash';
import { scratchDir } from '@haven/testing';
import { initRepository, openRepository } from './repository';
import { isRepositoryError } from './repository.errors';
import { blocksOf, isZero, localRemote, patternedDisk } from './testing/disk-pattern.fixture';

const FAST_KDF = { N: 1024 };

async function snapshotTree(root: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else files.set(path, `${(await stat(path)).mtimeMs}:${(await readFile(path)).toString('base64')}`);
    }
  };
  await walk(root);
  return files;
}

describe('repository open and keys', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  beforeEach(async () => (dir = await scratchDir('haven-repo-')));
  afterEach(() => dir.cleanup());

  it('keeps the key out of repository.json and reopens with it', async () => {
    const store = localRemote(dir.path);
    const repo = await initRepository(store, { key: 'correct horse battery staple', kdf: FAST_KDF });
    const config = await readFile(join(dir.path, 'repository.json'), 'utf8');
    expect(config).not.toContain('correct horse');
    expect(JSON.parse(config)).toMatchObject({
      version: 1,
      blockSize: 2 * 1024 * 1024,
      chunkId: 'keyed-blake3',
      encryption: { cipher: 'aes-256-gcm', kdf: { name: 'scrypt' } },
    });
    const reopened = await openRepository(store, { key: 'correct horse battery staple' });
    expect(reopened.id).toBe(repo.id);
    expect(reopened.encrypted).toBe(true);
  });

  it('reports a wrong key at open, before anything is written', async () => {
    const store = localRemote(dir.path);
    const repo = await initRepository(store, { key: 'right', kdf: FAST_KDF });
    const writer = await repo.createRestorePointWriter({ vm: { uuid: 'vm-1', name: 'web' } });
    await writer.writeDisk(
      { key: 'xvda', virtualSize: 4 * 2 * 1024 * 1024 },
      blocksOf(patternedDisk('k', 4)),
    );
    await writer.commit();
    const before = await snapshotTree(dir.path);
    const error: unknown = await openRepository(store, { key: 'wrong' }).catch((e: unknown) => e);
    expect(isRepositoryError(error, 'WRONG_KEY')).toBe(true);
    expect((error as Error).message).toMatch(/key does not open the repository on remote test-local/);
    expect(await openRepository(store).catch((e: unknown) => e)).toMatchObject({ code: 'KEY_REQUIRED' });
    expect(await snapshotTree(dir.path)).toEqual(before);
  });

  it('detects an altered repository.json as a failed key check', async () => {
    const store = localRemote(dir.path);
    await initRepository(store, { key: 'k', kdf: FAST_KDF });
    const config = JSON.parse(await readFile(join(dir.path, 'repository.json'), 'utf8'));
    config.encryption.cipher = 'chacha20-poly1305';
    await store.put('repository.json', Buffer.from(JSON.stringify(config)));
    await expect(openRepository(store, { key: 'k' })).rejects.toMatchObject({ code: 'WRONG_KEY' });
  });

  it('refuses a second init, a missing repository and a key for a plain one', async () => {
    const store = localRemote(dir.path);
    await expect(openRepository(store)).rejects.toMatchObject({ code: 'NOT_INITIALIZED' });
    await initRepository(store);
    await expect(initRepository(store)).rejects.toMatchObject({ code: 'ALREADY_INITIALIZED' });
    await expect(openRepository(store, { key: 'x' })).rejects.toMatchObject({ code: 'KEY_NOT_EXPECTED' });
  });

  it.each([
    { chunkIdHash: undefined, key: undefined, chunkId: 'blake3' },
    { chunkIdHash: undefined, key: 'k', chunkId: 'keyed-blake3' },
    { chunkIdHash: 'sha256' as const, key: undefined, chunkId: 'sha256' },
    { chunkIdHash: 'sha256' as const, key: 'k', chunkId: 'hmac-sha256' },
  ])(
    'names chunks with $chunkId (chunkIdHash $chunkIdHash, key $key) and reads them back',
    async (setting) => {
      const store = localRemote(dir.path);
      const repo = await initRepository(store, {
        ...(setting.chunkIdHash !== undefined ? { chunkIdHash: setting.chunkIdHash } : {}),
        ...(setting.key !== undefined ? { key: setting.key, kdf: FAST_KDF } : {}),
      });
      expect(JSON.parse(await readFile(join(dir.path, 'repository.json'), 'utf8')).chunkId).toBe(
        setting.chunkId,
      );
      const disk = patternedDisk(`ids-${setting.chunkId}`, 3, 4096);
      const writer = await repo.createRestorePointWriter({ vm: { uuid: 'vm-1', name: 'web' } });
      await writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
      const manifest = await writer.commit();
      const stored = [...(await snapshotTree(join(dir.path, 'chunks'))).keys()]
        .map((path) => basename(path))
        .sort();
      const blocks = [...disk.blocks.values()].filter((data) => !isZero(data));
      // Unkeyed ids are the plain hash of the block; keyed ones are not (the key is the repository's).
      const plain = blocks.map((data) =>
        (setting.chunkId.includes('blake3')
          ? blake3(data)
          : createHash('sha256').update(data).digest()
        ).toString('hex'),
      );
      expect(stored).toHaveLength(blocks.length);
      if (setting.key === undefined) expect(stored).toEqual([...plain].sort());
      else expect(stored.filter((id) => plain.includes(id))).toEqual([]);
      const reopened = await openRepository(store, setting.key !== undefined ? { key: setting.key } : {});
      const point = await reopened.openRestorePoint(manifest.id);
      for (const [index, data] of disk.blocks)
        expect((await point.disk('xvda').readBlock(index)).equals(data)).toBe(true);
    },
  );

  it('refuses an unknown chunk id hash before writing anything, and a repository.json naming one', async () => {
    const store = localRemote(dir.path);
    await expect(initRepository(store, { chunkIdHash: 'md5' as 'sha256' })).rejects.toThrow(
      /chunk id hash "md5" is unknown; use blake3 or sha256/,
    );
    expect(await readdir(dir.path)).toEqual([]);
    await initRepository(store);
    const config = JSON.parse(await readFile(join(dir.path, 'repository.json'), 'utf8'));
    for (const chunkId of ['md5', 'keyed-blake3']) {
      await store.put('repository.json', Buffer.from(JSON.stringify({ ...config, chunkId })));
      await expect(openRepository(store)).rejects.toMatchObject({
        code: 'CONFIG_DAMAGED',
        message: expect.stringMatching(
          chunkId === 'md5' ? /chunk id algorithm "md5"/ : /unencrypted repository with keyed ids/,
        ),
      });
    }
  });

  it('changes the key without rewriting chunks', async () => {
    const store = localRemote(dir.path);
    const repo = await initRepository(store, { key: 'old', kdf: FAST_KDF });
    const writer = await repo.createRestorePointWriter({ vm: { uuid: 'vm-1', name: 'web' } });
    const disk = patternedDisk('rekey', 3);
    await writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
    const manifest = await writer.commit();
    await repo.changeKey('new');
    await expect(openRepository(store, { key: 'old' })).rejects.toMatchObject({ code: 'WRONG_KEY' });
    const reopened = await openRepository(store, { key: 'new' });
    const point = await reopened.openRestorePoint(manifest.id);
    for (const [index, data] of disk.blocks)
      expect((await point.disk('xvda').readBlock(index)).equals(data)).toBe(true);
  });
});
