import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { RemoteError, type RemoteStore } from '@haven/remote-sdk';
import { TestPattern, runRemoteContractSuite } from '@haven/remote-sdk/testing';
import { describeIntegration, startNfsGanesha, uniqueName, type NfsGaneshaServer } from '@haven/testing';

import { plugin, type NfsRemoteConfig } from './nfs.plugin';

const MiB = 1024 * 1024;

async function sha256OfFile(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

/** Every file below `root`, temporaries included: what the server really holds. */
async function filesOnServer(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name).slice(root.length + 1));
}

describeIntegration('nfs remote (user-space NFSv3 client against nfs-ganesha)', ['nfs-ganesha'], () => {
  let server: NfsGaneshaServer;
  const config = (extra: Partial<NfsRemoteConfig> = {}): Record<string, unknown> => ({
    host: server.host,
    export: server.exportPath,
    nfsPort: server.nfsPort,
    mountPort: server.mountPort,
    timeoutMs: 5000,
    ...extra,
  });
  const open = (name: string, extra: Partial<NfsRemoteConfig> = {}): Promise<RemoteStore> =>
    Promise.resolve(plugin.create(config(extra), { name }));

  beforeAll(async () => {
    server = await startNfsGanesha();
  }, 60_000);
  afterAll(async () => {
    await server.stop();
  }, 30_000);

  runRemoteContractSuite('nfs (userspace)', async () => {
    const store = await open('nfs-contract', { path: uniqueName('contract') });
    return { store, cleanup: () => Promise.resolve() };
  });

  describe('on the server side', () => {
    let store: RemoteStore;
    let folder: string;
    beforeAll(async () => {
      folder = uniqueName('server-side');
      store = await open('nfs-server-side', { path: folder });
    });
    afterAll(() => store.close());

    it.each([2 * MiB, 64 * MiB + 7])(
      'writes %i bytes byte-exact, as the server stores them',
      async (size) => {
        const pattern = new TestPattern(`nfs-exact-${size}`);
        await store.put(`exact-${size}/object`, pattern.stream(size), { size });
        expect(await sha256OfFile(join(server.exportPath, folder, `exact-${size}`, 'object'))).toBe(
          pattern.sha256(size),
        );
        expect(await filesOnServer(join(server.exportPath, folder, `exact-${size}`))).toEqual(['object']);
      },
      120_000,
    );

    describeIntegration('cross-checked with libnfs', ['libnfs'], () => {
      it('reads back what libnfs (nfs-cp) wrote, and libnfs reads what Haven wrote', async () => {
        const pattern = new TestPattern('nfs-libnfs');
        const size = 3 * MiB + 5;
        const scratch = join(server.exportPath, '..', 'libnfs-source');
        await mkdir(join(server.exportPath, folder, 'libnfs'), { recursive: true });
        await writeFile(scratch, pattern.bytes(0, size));
        const url = (name: string): string =>
          `nfs://127.0.0.1${server.exportPath}/${folder}/libnfs/${name}?version=3&nfsport=${server.nfsPort}&mountport=${server.mountPort}`;
        execFileSync('nfs-cp', [scratch, url('from-libnfs')], { stdio: 'ignore' });
        expect((await store.getBuffer('libnfs/from-libnfs')).equals(pattern.bytes(0, size))).toBe(true);
        await store.put('libnfs/from-haven', pattern.stream(size));
        const copy = `${scratch}-back`;
        execFileSync('nfs-cp', [url('from-haven'), copy], { stdio: 'ignore' });
        expect(await sha256OfFile(copy)).toBe(pattern.sha256(size));
      }, 60_000);
    });

    it('lets a reader finish the old version of an object overwritten under it', async () => {
      const size = 32 * MiB; // more than the 8 reads in flight, so reading goes on after the overwrite
      const oldPattern = new TestPattern('nfs-open-old');
      const newPattern = new TestPattern('nfs-open-new');
      await store.put('open/object', oldPattern.stream(size));
      const reader = (await store.get('open/object'))[Symbol.asyncIterator]();
      const hash = createHash('sha256');
      const first = await reader.next();
      hash.update(first.value as Buffer);
      await store.put('open/object', newPattern.stream(size));
      for (let next = await reader.next(); next.done !== true; next = await reader.next())
        hash.update(next.value as Buffer);
      expect(hash.digest('hex')).toBe(oldPattern.sha256(size));
      expect(await sha256OfFile(join(server.exportPath, folder, 'open', 'object'))).toBe(
        newPattern.sha256(size),
      );
      expect((await store.list('open/')).objects.map((object) => object.key)).toEqual(['open/object']);
    });

    it('puts into a folder that another writer removed after this one created it', async () => {
      await store.put('vanishing/a', Buffer.from('one'));
      await store.delete('vanishing/a');
      await rm(join(server.exportPath, folder, 'vanishing'), { recursive: true });
      await store.put('vanishing/b', Buffer.from('two'));
      expect((await store.getBuffer('vanishing/b')).toString()).toBe('two');
    });

    it('finds the NFS and MOUNT ports through the portmapper when none are given', async () => {
      const discovered = await Promise.resolve(
        plugin.create(
          { host: server.host, export: server.exportPath, path: folder },
          { name: 'nfs-portmap' },
        ),
      );
      try {
        await discovered.put('portmap/x', Buffer.from('via rpcbind'));
        expect((await store.getBuffer('portmap/x')).toString()).toBe('via rpcbind');
      } finally {
        await discovered.close();
      }
    });

    it('reports the capacity of the exported file system', async () => {
      const capacity = await store.capacity();
      expect(capacity.totalBytes).toBeGreaterThan(0);
      expect(capacity.freeBytes).toBeGreaterThan(0);
      expect(capacity.freeBytes).toBeLessThanOrEqual(capacity.totalBytes ?? 0);
    });

    it('answers PERMISSION_DENIED for a folder the AUTH_SYS user may not write', async () => {
      const locked = join(server.exportPath, folder, 'locked');
      await mkdir(locked, { recursive: true });
      await chmod(locked, 0o755);
      const stranger = await open('nfs-stranger', { path: folder, uid: 54321, gid: 54321 });
      try {
        await expect(stranger.put('locked/x', Buffer.from('no'))).rejects.toMatchObject({
          code: 'PERMISSION_DENIED',
        });
        await expect(stranger.put('locked/x', Buffer.from('no'))).rejects.toThrow(/nfs-stranger.*locked\/x/);
      } finally {
        await stranger.close();
      }
    });

    it('refuses an export the server does not have, naming it', async () => {
      const wrong = await Promise.resolve(
        plugin.create(config({ export: `${server.exportPath}-missing` }), { name: 'nfs-wrong-export' }),
      );
      try {
        const failure = await wrong.stat('x').catch((error: unknown) => error);
        expect(failure).toBeInstanceOf(RemoteError);
        expect((failure as RemoteError).message).toContain(`${server.exportPath}-missing`);
        expect((failure as RemoteError).code).not.toBe('NOT_FOUND');
      } finally {
        await wrong.close();
      }
    });
  });

  describe('when the server dies', () => {
    it('fails a large put as TRANSIENT, shows no partial object, and works again after a restart', async () => {
      const folder = uniqueName('crash');
      const store = await open('nfs-crash', { path: folder, timeoutMs: 3000, staleTemporaryMs: 1500 });
      try {
        await store.put('before', Buffer.from('kept'));
        const pattern = new TestPattern('nfs-crash');
        let killed: Promise<void> | undefined;
        const put = store.put(
          'big',
          pattern.stream(256 * MiB, {
            onBytes: (sent) => {
              if (sent >= 16 * MiB && killed === undefined) killed = server.kill();
            },
          }),
        );
        await expect(put).rejects.toMatchObject({ code: 'TRANSIENT' });
        await killed;
        await server.restart();
        await expect(store.stat('big')).rejects.toMatchObject({ code: 'NOT_FOUND' });
        expect((await store.getBuffer('before')).toString()).toBe('kept');
        // The temporary stays on the server (nobody was there to remove it), hidden, never under the key.
        const left = await filesOnServer(join(server.exportPath, folder));
        expect(left.filter((name) => !name.startsWith('.haven-tmp'))).toEqual(['before']);
        expect(left.filter((name) => name.startsWith('.haven-tmp'))).toHaveLength(1);
        // Once older than staleTemporaryMs, the next listing removes it.
        await new Promise((resolve) => setTimeout(resolve, 2000));
        expect((await store.list('')).objects.map((object) => object.key)).toEqual(['before']);
        expect(await filesOnServer(join(server.exportPath, folder))).toEqual(['before']);
      } finally {
        await store.close();
      }
    }, 120_000);
  });
});
