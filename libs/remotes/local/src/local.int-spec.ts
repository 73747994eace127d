import { execFileSync } from 'node:child_process';
import { chmod, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isRemoteError, Remote, testRemote, type RemoteStore } from '@haven/remote-sdk';
import { TestPattern, runRemoteContractSuite } from '@haven/remote-sdk/testing';
import { describeIntegration, scratchDir } from '@haven/testing';
import { LocalDriver } from './local.driver';
import { plugin } from './local.plugin';

runRemoteContractSuite('local', async () => {
  const folder = await scratchDir('haven-remote-local-');
  const path = join(folder.path, 'remote');
  await mkdir(path);
  const store = await plugin.create({ path }, { name: 'local-contract' });
  return { store, cleanup: folder.cleanup };
});

/** Every file under `root`, temporaries included (the listing hides them; the disk must not hold them). */
async function filesOnDisk(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
}

async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

describe('local remote', () => {
  let folder: { path: string; cleanup: () => Promise<void> };
  let store: RemoteStore;

  beforeAll(async () => {
    folder = await scratchDir('haven-remote-local-');
    store = await plugin.create({ path: folder.path }, { name: 'local-unit' });
  });
  afterAll(() => folder.cleanup());

  it('leaves no temporary file on disk after a failed put', async () => {
    const pattern = new TestPattern('failed-put');
    await expect(
      store.put('failed/object', pattern.stream(8 << 20, { failAfter: 3 << 20 })),
    ).rejects.toThrow();
    expect(await filesOnDisk(folder.path)).toEqual([]);
  });

  it('many concurrent puts into one folder (sharing folder fsyncs) are all stored whole, and a put into a new folder too', async () => {
    const bodies = Array.from({ length: 24 }, (_, index) => Buffer.alloc(700_000 + index, index + 1));
    await Promise.all(
      bodies.map((body, index) =>
        index % 2 === 0 ? store.put(`shared/o${index}`, body) : store.putIfAbsent(`shared/o${index}`, body),
      ),
    );
    await store.put('fresh/folder/below/object', Buffer.from('new'));
    for (const [index, body] of bodies.entries()) {
      expect((await readAll(await store.get(`shared/o${index}`))).equals(body)).toBe(true);
    }
    expect((await readAll(await store.get('fresh/folder/below/object'))).toString()).toBe('new');
    expect((await filesOnDisk(folder.path)).filter((file) => file.includes('.haven-tmp'))).toEqual([]);
    for (const index of bodies.keys()) await store.delete(`shared/o${index}`);
    await store.delete('fresh/folder/below/object');
  });

  it('removes folders emptied by deletes and renames', async () => {
    await store.put('deep/a/b/c', Buffer.from('x'));
    await store.rename('deep/a/b/c', 'other/c');
    await store.delete('other/c');
    expect(await readdir(folder.path)).toEqual([]);
  });

  it('self-test reports a read-only remote in plain words, and a writable one as fine', async () => {
    const locked = join(folder.path, 'self-test-locked');
    await mkdir(locked);
    const asRoot = process.getuid?.() === 0;
    if (asRoot) execFileSync('chattr', ['+i', locked]);
    else await chmod(locked, 0o555);
    try {
      const readOnly = await plugin.create({ path: locked }, { name: 'read-only' });
      const result = await testRemote(readOnly, {
        largeObjects: 1,
        largeObjectBytes: 1 << 20,
        smallObjects: 2,
      });
      expect(result.ok).toBe(false);
      expect(result.steps[0]).toMatchObject({ step: 'write', ok: false, code: 'PERMISSION_DENIED' });
      expect(result.problems[0]).toBe(
        'Haven is not allowed to write objects to remote "read-only". Grant the account it uses read, write, list and delete rights on this location.',
      );
    } finally {
      if (asRoot) execFileSync('chattr', ['-i', locked]);
      else await chmod(locked, 0o755);
      await rm(locked, { recursive: true });
    }
    const fine = await testRemote(store, { largeObjects: 1, largeObjectBytes: 1 << 20, smallObjects: 2 });
    expect(fine.ok).toBe(true);
    expect(fine.steps.map((step) => step.step)).toEqual(['write', 'read', 'list', 'capacity', 'delete']);
    expect(fine.capacity?.freeBytes).toBeGreaterThan(0);
  });

  it('refuses a key below an existing object with INVALID_ARGUMENT (a file cannot be a folder)', async () => {
    await store.put('conflict/file', Buffer.from('x'));
    await expect(store.put('conflict/file/below', Buffer.from('y'))).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(store.put('conflict/file/deeper/below', Buffer.from('y'))).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await store.delete('conflict/file');
  });

  it('reads an object whole up to maxBufferBytes and refuses a larger one with INVALID_ARGUMENT', async () => {
    const small = new Remote(new LocalDriver({ path: folder.path, fsync: false }), {
      name: 'local-small',
      maxBufferBytes: 10,
    });
    await small.put('sized/ten', Buffer.from('0123456789'));
    await small.put('sized/eleven', Buffer.from('0123456789a'));
    expect((await small.getBuffer('sized/ten')).toString()).toBe('0123456789');
    expect((await small.getBuffer('sized/eleven', { range: { start: 1, end: 11 } })).toString()).toBe(
      '123456789a',
    );
    await expect(small.getBuffer('sized/eleven')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await small.delete('sized/ten');
    await small.delete('sized/eleven');
  });

  it('does not list a folder as an object, nor answer it as one', async () => {
    await mkdir(join(folder.path, 'just-a-folder'));
    expect((await store.list('')).objects).toEqual([]);
    await expect(store.stat('just-a-folder')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(store.getBuffer('just-a-folder')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await rm(join(folder.path, 'just-a-folder'), { recursive: true });
  });

  it("never creates the remote's own folder: writes fail naming it; folders inside it are created", async () => {
    const root = join(folder.path, 'share-mount-point', 'haven');
    const gone = await plugin.create({ path: root }, { name: 'unmounted' });
    const staged = new Remote(new LocalDriver({ path: root, fsync: false }), { name: 'unmounted' });
    try {
      const attempts: [string, Promise<unknown>][] = [
        ['put', gone.put('repository.json', Buffer.from('{}'))],
        ['put', gone.put('chunks/ab/cd', Buffer.from('x'))],
        ['putIfAbsent', gone.putIfAbsent('repository.json', Buffer.from('{}'))],
        ['stageIfAbsent', staged.stageIfAbsent('chunks/ab/ef', Buffer.from('y')).then(() => staged.flush())],
      ];
      for (const [operation, attempt] of attempts) {
        const error = await attempt.then(
          () => new Error(`${operation} succeeded`),
          (failure: unknown) => failure,
        );
        expect([operation, isRemoteError(error, 'INVALID_ARGUMENT')]).toEqual([operation, true]);
        expect((error as Error).message).toContain(`the remote's folder ${root} does not exist`);
        expect((error as Error).message).toContain('is the share that holds it mounted?');
      }
      expect(await readdir(folder.path)).not.toContain('share-mount-point');
      // A self-test (what adding the remote runs) says so too.
      const result = await testRemote(gone, { largeObjects: 0, smallObjects: 1 });
      expect(result.ok).toBe(false);
      expect(result.problems.join(' ')).toContain(`${root} does not exist`);
      // Once the folder is there (empty), everything below it is created as needed.
      await mkdir(root, { recursive: true });
      await gone.put('chunks/ab/cd', Buffer.from('x'));
      await staged.stageIfAbsent('chunks/ab/ef', Buffer.from('y'));
      await staged.flush();
      expect((await gone.list('chunks/')).objects.map((object) => object.key)).toEqual([
        'chunks/ab/cd',
        'chunks/ab/ef',
      ]);
    } finally {
      await gone.close();
      await staged.close();
      await rm(join(folder.path, 'share-mount-point'), { recursive: true, force: true });
    }
  });

  it('refuses writes into a read-only folder with PERMISSION_DENIED', async () => {
    const locked = join(folder.path, 'locked');
    await mkdir(locked);
    // Root ignores mode bits, not the immutable attribute.
    const asRoot = process.getuid?.() === 0;
    if (asRoot) execFileSync('chattr', ['+i', locked]);
    else await chmod(locked, 0o555);
    try {
      const error = await store.put('locked/x', Buffer.from('x')).then(
        () => undefined,
        (failure: unknown) => failure,
      );
      expect(isRemoteError(error, 'PERMISSION_DENIED')).toBe(true);
      expect((error as Error).message).toContain('Remote "local-unit" (local): put "locked/x" failed');
    } finally {
      if (asRoot) execFileSync('chattr', ['-i', locked]);
      else await chmod(locked, 0o755);
      await rm(locked, { recursive: true });
    }
  });
});

describeIntegration('local remote on a full file system', ['tmpfs'], () => {
  let mountPoint: { path: string; cleanup: () => Promise<void> };

  beforeAll(async () => {
    mountPoint = await scratchDir('haven-remote-full-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mountPoint.path]);
  });
  afterAll(async () => {
    execFileSync('umount', [mountPoint.path]);
    await mountPoint.cleanup();
  });

  it('fails a put with NO_SPACE naming the remote, and leaves no partial object', async () => {
    const store = await plugin.create({ path: mountPoint.path }, { name: 'tiny' });
    const pattern = new TestPattern('full');
    let failure: unknown;
    try {
      await store.put('big/object', pattern.stream(16 << 20));
    } catch (error) {
      failure = error;
    }
    expect(isRemoteError(failure, 'NO_SPACE')).toBe(true);
    expect((failure as Error).message).toContain('Remote "tiny" (local): put "big/object" failed');
    expect(await store.exists('big/object')).toBe(false);
    expect(await filesOnDisk(mountPoint.path)).toEqual([]);
    const capacity = await store.capacity();
    expect(capacity.totalBytes).toBe(4 << 20);
    // Small objects still fit once the failed one is gone.
    await store.put('small', Buffer.alloc(1024));
    expect((await store.stat('small')).size).toBe(1024);
  });
});
