import localRemote from '@haven/remote-local';
import type { TaskExecutionContext } from '@haven/plugin-sdk';
import { initRepository, manifestKey } from '@haven/repository';
import { scratchDir } from '@haven/testing';
import { executeRestorePointDelete } from './restore-point-delete.executor';

const PASSPHRASE = 'the passphrase';
const VM = '6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b';
const ARCHIVE_ID = '20261207T093000123Z-0a1b2c3d-beef';
const POINT_ID = '20261207T093000123Z-0123456789ab';

describe('restore-point.delete: deletes one restore point from its remote', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  const openStore = () => localRemote.create({ path: dir.path }, { name: 'nas' });
  const lines: string[] = [];
  const context: TaskExecutionContext = {
    signal: new AbortController().signal,
    reportProgress: () => undefined,
    log: (_level, message) => lines.push(message),
    resources: {
      pool: () => Promise.reject(new Error('no pool in this test')),
      remote: async () => ({
        id: 'remote-1',
        name: 'nas',
        type: 'local',
        store: await openStore(),
        repositoryPassphrase: PASSPHRASE,
      }),
    },
  };
  const run = (key: string) =>
    executeRestorePointDelete(
      { input: { restorePointId: 'catalog-id', remoteId: 'remote-1', manifestKey: key } },
      context,
    );

  /** Every key left on the remote under `prefix`. */
  async function keysUnder(prefix: string): Promise<string[]> {
    const store = await openStore();
    try {
      const keys: string[] = [];
      for await (const object of store.listAll(prefix)) keys.push(object.key);
      return keys;
    } finally {
      await store.close();
    }
  }

  async function put(keys: string[]): Promise<void> {
    const store = await openStore();
    try {
      for (const key of keys) await store.put(key, Buffer.from('x'));
    } finally {
      await store.close();
    }
  }

  beforeEach(async () => {
    lines.length = 0;
    dir = await scratchDir('haven-rp-delete-');
    const store = await openStore();
    await initRepository(store, { key: PASSPHRASE, kdf: { N: 1024 } });
    await store.close();
  });
  afterEach(async () => {
    await dir.cleanup();
  });

  it('deletes an incremental restore point (manifest and disk indexes) and reports it as expired', async () => {
    const other = '20261207T093100123Z-ba9876543210';
    await put([manifestKey(POINT_ID), `restore-points/${POINT_ID}/disk-0.index`, manifestKey(other)]);
    const result = await run(manifestKey(POINT_ID));
    expect(result).toEqual({
      remoteId: 'remote-1',
      alreadyGone: false,
      expiredRestorePoints: [{ remoteId: 'remote-1', manifestKey: manifestKey(POINT_ID) }],
    });
    expect(await keysUnder('restore-points/')).toEqual([manifestKey(other)]);
  });

  it('deletes a full-backup archive with its segments', async () => {
    const key = `archives/${VM}/${ARCHIVE_ID}/manifest`;
    await put([
      key,
      `archives/${VM}/${ARCHIVE_ID}/segment-000000`,
      `archives/${VM}/${ARCHIVE_ID}/segment-000001`,
    ]);
    const result = await run(key);
    expect(result['expiredRestorePoints']).toEqual([{ remoteId: 'remote-1', manifestKey: key }]);
    expect(await keysUnder('archives/')).toEqual([]);
  });

  it('succeeds on a restore point already gone (a redelivered task) and still reports it, so the catalog drops it', async () => {
    const result = await run(manifestKey(POINT_ID));
    expect(result).toMatchObject({
      alreadyGone: true,
      expiredRestorePoints: [{ remoteId: 'remote-1', manifestKey: manifestKey(POINT_ID) }],
    });
    expect(lines).toContain(
      'restore point catalog-id was already gone from remote nas; its remaining objects, if any, are deleted',
    );
  });

  it('refuses, for good, a key that names no restore point, deleting nothing', async () => {
    await put(['repository-notes/manifest']);
    await expect(run('repository-notes/manifest')).rejects.toMatchObject({
      permanent: true,
      message:
        '"repository-notes/manifest" is neither a restore point\'s nor a full-backup archive\'s manifest key; nothing was deleted',
    });
    expect(await keysUnder('repository-notes/')).toEqual(['repository-notes/manifest']);
  });
});
