import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { randomBytes } from 'node:crypto';
import { RESERVED_SEGMENT_PREFIX, type RemoteStore } from '@haven/remote-sdk';
import { scratchDir } from '@haven/testing';
import { plugin } from './local.plugin';
import { LocalStagingArea, STAGED_FLUSH_AT } from './local.staging';
import { syncFile } from './local.file-io';

/** Every file under `root`, by path relative to it (staging folders included). */
async function filesOnDisk(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(root, join(entry.parentPath, entry.name)))
    .sort();
}

const isStaging = (path: string): boolean => path.startsWith(`${RESERVED_SEGMENT_PREFIX}-staging-`);

describe('local remote: staged writes', () => {
  let folder: { path: string; cleanup: () => Promise<void> };
  let root: string;
  let store: RemoteStore;

  beforeEach(async () => {
    folder = await scratchDir('haven-remote-local-staging-');
    root = join(folder.path, 'remote');
    await mkdir(root);
    store = await plugin.create({ path: root }, { name: 'local-staging' });
  });
  afterEach(async () => {
    await store.close();
    await folder.cleanup();
  });

  it('keeps a staged object out of sight (no final name, not listed) until flush, then whole', async () => {
    const body = randomBytes(100_000);
    expect(await store.stageIfAbsent('chunks/ab/cd/abcd', body)).toBe(true);
    expect(await store.exists('chunks/ab/cd/abcd')).toBe(false);
    expect((await store.list('')).objects).toEqual([]);
    const before = await filesOnDisk(root);
    expect(before).toHaveLength(1);
    expect(isStaging(before[0] ?? '')).toBe(true);
    // Staged twice before a flush: one copy.
    expect(await store.stageIfAbsent('chunks/ab/cd/abcd', body)).toBe(false);

    await store.flush();
    expect((await store.getBuffer('chunks/ab/cd/abcd')).equals(body)).toBe(true);
    expect((await filesOnDisk(root)).filter((path) => !isStaging(path))).toEqual(['chunks/ab/cd/abcd']);
    expect((await filesOnDisk(root)).filter(isStaging)).toEqual([]);
  });

  it('never holds more than twice its flush threshold unflushed: staging flushes on its own', async () => {
    const count = STAGED_FLUSH_AT * 4;
    let mostUnflushed = 0;
    for (let i = 0; i < count; i++) {
      await store.stageIfAbsent(`objects/${String(i).padStart(5, '0')}`, Buffer.from(`object ${i}`));
      if (i % 16 === 0)
        mostUnflushed = Math.max(mostUnflushed, (await filesOnDisk(root)).filter(isStaging).length);
    }
    expect(mostUnflushed).toBeLessThanOrEqual(2 * STAGED_FLUSH_AT + 1);
    // Some were made visible before any explicit flush.
    expect((await store.list('objects/', { limit: 1000 })).objects.length).toBeGreaterThan(0);
    await store.flush();
    let listed = 0;
    for await (const object of store.listAll('objects/')) {
      expect(object.size).toBe(Buffer.byteLength(`object ${Number(object.key.slice(8))}`));
      listed++;
    }
    expect(listed).toBe(count);
  });

  it('keeps what a failed flush could not place staged, and places it at the next flush', async () => {
    expect(await store.stageIfAbsent('blocked/child', Buffer.from('child'))).toBe(true);
    expect(await store.stageIfAbsent('free/child', Buffer.from('free'))).toBe(true);
    // A file where the staged object's folder must go: placing it fails until the file is gone.
    await store.put('blocked', Buffer.from('a file, not a folder'));
    await expect(store.flush()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect((await store.getBuffer('free/child')).toString()).toBe('free');
    expect(await store.exists('blocked/child')).toBe(false);

    await store.delete('blocked');
    await store.flush();
    expect((await store.getBuffer('blocked/child')).toString()).toBe('child');
    expect((await filesOnDisk(root)).filter(isStaging)).toEqual([]);
  });

  describe('early syncs', () => {
    const signal = new AbortController().signal;
    /**
     * A staging area whose fdatasyncs are recorded: each when it starts (by path, before any await)
     * and when it ends (by the staged file's content); the first of `failFirstSyncOf` fails.
     */
    function observedArea(failFirstSyncOf?: string) {
      const started: string[] = [];
      const synced: string[] = [];
      /** Per sync started: through the handle the write left open (true), or by name. */
      const throughHandle: boolean[] = [];
      let failed = false;
      const area = new LocalStagingArea(root, RESERVED_SEGMENT_PREFIX, {
        fsync: true,
        directWrites: false,
        syncFile: async (path, handle) => {
          started.push(path);
          throughHandle.push(handle !== undefined);
          const content = (await readFile(path)).toString();
          if (content === failFirstSyncOf && !failed) {
            failed = true;
            throw Object.assign(new Error(`EIO: i/o error, fdatasync '${path}'`), { code: 'EIO' });
          }
          await syncFile(path, handle);
          synced.push(content);
        },
      });
      const stage = async (target: string, body: string) => {
        expect(await area.stage(join(root, target), Buffer.from(body), signal)).toBe(true);
      };
      return { area, started, synced, throughHandle, stage };
    }
    const openDescriptors = async () => (await readdir('/proc/self/fd')).length;
    const stagedFiles = async () => (await filesOnDisk(root)).filter(isStaging);

    it('syncs each staged object once, as soon as it is written, before any flush', async () => {
      const { area, started, synced, throughHandle, stage } = observedArea();
      const descriptors = await openDescriptors();
      await stage('chunks/a', 'first');
      await stage('chunks/b', 'second');
      // Both syncs started while staging, before any flush, through the handles of their writes.
      expect(started).toHaveLength(2);
      expect(throughHandle).toEqual([true, true]);
      // The flush waits for them and only links the objects (no second fdatasync).
      await area.flush();
      expect(started).toHaveLength(2);
      expect(synced.sort()).toEqual(['first', 'second']);
      expect((await store.getBuffer('chunks/a')).toString()).toBe('first');
      expect((await store.getBuffer('chunks/b')).toString()).toBe('second');
      // Each handle was closed once its sync ended.
      expect(await openDescriptors()).toBe(descriptors);
      await area.close();
    });

    it('fails the flush when an early sync failed, keeps the object out of sight, and syncs it again at the next flush', async () => {
      const { area, started, synced, throughHandle, stage } = observedArea('unlucky');
      await stage('chunks/bad', 'unlucky');
      expect(started).toHaveLength(1);
      await expect(area.flush()).rejects.toThrow(/EIO/);
      expect(await store.exists('chunks/bad')).toBe(false);
      expect(await stagedFiles()).toHaveLength(1);

      await area.flush();
      expect([started.length, synced]).toEqual([2, ['unlucky']]);
      // Again by name: the handle of the write was closed when its sync failed.
      expect(throughHandle).toEqual([true, false]);
      expect((await store.getBuffer('chunks/bad')).toString()).toBe('unlucky');
      await area.close();
      expect(await stagedFiles()).toEqual([]);
    });
  });

  it('refuses at once to stage an object under a key that is an object', async () => {
    await store.put('file', Buffer.from('x'));
    await expect(store.stageIfAbsent('file/child', Buffer.from('y'))).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });

  it('flushes what is staged when closed, and removes its staging folder', async () => {
    expect(await store.stageIfAbsent('late/object', Buffer.from('late'))).toBe(true);
    await store.close();
    const reopened = await plugin.create({ path: root }, { name: 'local-staging-reopened' });
    expect((await reopened.getBuffer('late/object')).toString()).toBe('late');
    expect((await readdir(root)).filter(isStaging)).toEqual([]);
    await reopened.close();
  });

  it('leaves nothing visible when the writing process is killed before its flush', async () => {
    const script = `
      const { plugin } = require(${JSON.stringify(join(__dirname, 'local.plugin'))});
      (async () => {
        const store = await plugin.create({ path: ${JSON.stringify(root)} }, { name: 'doomed' });
        for (let i = 0; i < 20; i++) await store.stageIfAbsent('doomed/' + i, Buffer.alloc(65536, i));
        process.stdout.write('staged\\n');
        setInterval(() => undefined, 1000);
      })();
    `;
    const writer = join(folder.path, 'doomed-writer.js');
    await writeFile(writer, script);
    const child = spawn(process.execPath, [join(__dirname, '../../../../bin/run.js'), writer], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('staged')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`the writer exited early (${String(code)})`)));
    });
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));

    expect((await store.list('doomed/')).objects).toEqual([]);
    expect((await filesOnDisk(root)).filter((path) => !isStaging(path))).toEqual([]);
    expect((await filesOnDisk(root)).filter(isStaging)).toHaveLength(20);
  });

  it("removes other processes' staging folders left for more than a day, and only those", async () => {
    const stale = join(root, `${RESERVED_SEGMENT_PREFIX}-staging-otherhost-1-dead`);
    const recent = join(root, `${RESERVED_SEGMENT_PREFIX}-staging-otherhost-2-busy`);
    for (const path of [stale, recent]) {
      await mkdir(path, { recursive: true });
      await writeFile(join(path, 'leftover'), 'x');
    }
    const twoDaysAgo = new Date(Date.now() - 2 * 24 * 3600 * 1000);
    await utimes(stale, twoDaysAgo, twoDaysAgo);

    await store.stageIfAbsent('trigger', Buffer.from('first staged object of this process'));
    await expect(stat(stale)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await stat(recent)).isDirectory()).toBe(true);
  });
});
