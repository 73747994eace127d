import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { RemoteError, type RemoteStore } from '@haven/remote-sdk';
import { TestPattern, runRemoteContractSuite } from '@haven/remote-sdk/testing';
import { describeIntegration, startSamba, uniqueName, type SambaServer } from '@haven/testing';

import { plugin, type SmbRemoteConfig } from './smb.plugin';

const MiB = 1024 * 1024;

/** Every file below `root`, temporaries included: what the server really holds. */
async function filesOnServer(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name).slice(root.length + 1));
}

describeIntegration('smb remote (built-in SMB2 client against Samba)', ['samba'], () => {
  let server: SambaServer;
  const config = (extra: Partial<SmbRemoteConfig> = {}): Record<string, unknown> => ({
    host: server.host,
    port: server.port,
    share: server.share,
    username: server.username,
    password: server.password,
    timeoutMs: 5000,
    ...extra,
  });
  const open = (name: string, extra: Partial<SmbRemoteConfig> = {}): Promise<RemoteStore> =>
    Promise.resolve(plugin.create(config(extra), { name }));

  beforeAll(async () => {
    server = await startSamba();
  }, 60_000);
  afterAll(async () => {
    await server.stop();
  }, 30_000);

  runRemoteContractSuite('smb', async () => {
    const store = await open('smb-contract', { prefix: uniqueName('contract') });
    return { store, cleanup: () => Promise.resolve() };
  });

  describe('on the server side', () => {
    let store: RemoteStore;
    let prefix: string;
    beforeAll(async () => {
      prefix = uniqueName('server-side');
      store = await open('smb-server-side', { prefix, domain: server.domain });
    });
    afterAll(() => store.close());

    it.each([2 * MiB, 64 * MiB + 7])(
      'writes %i bytes byte-exact (checked on disk and through smbclient), and reads them back',
      async (size) => {
        const pattern = new TestPattern(`smb-exact-${size}`);
        await store.put(`exact-${size}/object`, pattern.stream(size, { chunkBytes: 100_000 }), { size });
        const onDisk = join(server.sharePath, prefix, `exact-${size}`, 'object');
        expect(
          createHash('sha256')
            .update(await readFile(onDisk))
            .digest('hex'),
        ).toBe(pattern.sha256(size));
        const copy = join(tmpdir(), `${uniqueName('smbclient')}.bin`);
        execFileSync(
          'smbclient',
          [
            '-p',
            String(server.port),
            `//127.0.0.1/${server.share}`,
            '-U',
            `${server.username}%${server.password}`,
            '-c',
            `get ${prefix}/exact-${size}/object ${copy}`,
          ],
          { stdio: 'ignore' },
        );
        expect(
          createHash('sha256')
            .update(await readFile(copy))
            .digest('hex'),
        ).toBe(pattern.sha256(size));
        const hash = createHash('sha256');
        for await (const chunk of await store.get(`exact-${size}/object`)) hash.update(chunk as Buffer);
        expect(hash.digest('hex')).toBe(pattern.sha256(size));
        expect(await filesOnServer(join(server.sharePath, prefix, `exact-${size}`))).toEqual(['object']);
      },
      120_000,
    );

    it('overwrites an object a reader has open: the reader finishes the old version, the old file goes once it closes', async () => {
      const size = 8 * MiB;
      const oldPattern = new TestPattern('smb-open-old');
      const newPattern = new TestPattern('smb-open-new');
      await store.put('open/object', oldPattern.stream(size));
      const reader = (await store.get('open/object'))[Symbol.asyncIterator]();
      const hash = createHash('sha256');
      const first = await reader.next();
      hash.update(first.value as Buffer);
      await store.put('open/object', newPattern.stream(size));
      for (let next = await reader.next(); next.done !== true; next = await reader.next())
        hash.update(next.value as Buffer);
      expect(hash.digest('hex')).toBe(oldPattern.sha256(size));
      const now = createHash('sha256');
      for await (const chunk of await store.get('open/object')) now.update(chunk as Buffer);
      expect(now.digest('hex')).toBe(newPattern.sha256(size));
      expect(await filesOnServer(join(server.sharePath, prefix, 'open'))).toEqual(['object']);
    });

    it('puts into a folder that another writer removed after this one created it', async () => {
      await store.put('vanishing/a', Buffer.from('one'));
      await store.delete('vanishing/a');
      await rm(join(server.sharePath, prefix, 'vanishing'), { recursive: true });
      await store.put('vanishing/b', Buffer.from('two'));
      expect((await store.getBuffer('vanishing/b')).toString()).toBe('two');
    });

    it('reads what smbclient wrote', async () => {
      const pattern = new TestPattern('smb-from-smbclient');
      const source = join(tmpdir(), `${uniqueName('smbclient-src')}.bin`);
      await writeFile(source, pattern.bytes(0, 3 * MiB + 1));
      execFileSync(
        'smbclient',
        [
          '-p',
          String(server.port),
          `//127.0.0.1/${server.share}`,
          '-U',
          `${server.username}%${server.password}`,
          '-c',
          `put ${source} ${prefix}/from-smbclient`,
        ],
        { stdio: 'ignore' },
      );
      expect((await store.getBuffer('from-smbclient')).equals(pattern.bytes(0, 3 * MiB + 1))).toBe(true);
    });
  });

  describe('credentials', () => {
    it('answers AUTH_FAILED for a wrong password, without the password in the message', async () => {
      const wrongPassword = 'Definitely-Wrong-Password-42';
      const store = await open('smb-wrong-password', { password: wrongPassword });
      try {
        const failure = await store.stat('x').catch((error: unknown) => error);
        expect(failure).toBeInstanceOf(RemoteError);
        expect((failure as RemoteError).code).toBe('AUTH_FAILED');
        expect((failure as RemoteError).message).toContain('smb-wrong-password');
        expect((failure as RemoteError).message).not.toContain(wrongPassword);
        expect(JSON.stringify((failure as RemoteError).cause)).not.toContain(wrongPassword);
      } finally {
        await store.close();
      }
    });

    it('answers AUTH_FAILED for an unknown user', async () => {
      const store = await open('smb-unknown-user', { username: 'nobody-here' });
      try {
        await expect(store.stat('x')).rejects.toMatchObject({ code: 'AUTH_FAILED' });
      } finally {
        await store.close();
      }
    });

    it('names a missing share', async () => {
      const store = await open('smb-missing-share', { share: 'no-such-share' });
      try {
        await expect(store.stat('x')).rejects.toThrow(/no such share/);
      } finally {
        await store.close();
      }
    });
  });

  describe('connections', () => {
    it('signs every request when the server requires signing', async () => {
      const strict = await startSamba({ requireSigning: true });
      const store = await Promise.resolve(
        plugin.create(
          {
            host: strict.host,
            port: strict.port,
            share: strict.share,
            username: strict.username,
            password: strict.password,
          },
          { name: 'smb-signing' },
        ),
      );
      try {
        const pattern = new TestPattern('smb-signing');
        await store.put('signed/object', pattern.stream(3 * MiB));
        expect((await store.getBuffer('signed/object')).equals(pattern.bytes(0, 3 * MiB))).toBe(true);
        expect((await store.list('signed/')).objects.map((object) => object.key)).toEqual(['signed/object']);
      } finally {
        await store.close();
        await strict.stop();
      }
    });

    it('reconnects after the server dropped the connection', async () => {
      const store = await open('smb-reconnect');
      try {
        await store.put('reconnect/a', Buffer.from('before the drop'));
        server.dropConnections();
        await new Promise((resolve) => setTimeout(resolve, 200));
        expect((await store.getBuffer('reconnect/a')).toString()).toBe('before the drop');
        await store.put('reconnect/b', Buffer.from('after the drop'));
        expect((await store.getBuffer('reconnect/b')).toString()).toBe('after the drop');
      } finally {
        await store.close();
      }
    });
  });

  describe('when the connection drops mid-put', () => {
    it('fails as TRANSIENT, shows no object, and a later listing removes the stale temporary', async () => {
      const prefix = uniqueName('dropped');
      const store = await open('smb-dropped', { prefix, staleTemporaryMs: 1500 });
      try {
        await store.put('before', Buffer.from('kept'));
        const pattern = new TestPattern('smb-dropped');
        let dropped = false;
        const put = store.put(
          'big',
          pattern.stream(256 * MiB, {
            onBytes: (sent) => {
              if (sent >= 16 * MiB && !dropped) {
                dropped = true;
                server.dropConnections();
              }
            },
          }),
        );
        await expect(put).rejects.toMatchObject({ code: 'TRANSIENT' });
        await expect(store.stat('big')).rejects.toMatchObject({ code: 'NOT_FOUND' });
        const left = await filesOnServer(join(server.sharePath, prefix));
        expect(left.filter((name) => !name.startsWith('.haven-tmp'))).toEqual(['before']);
        expect(left.filter((name) => name.startsWith('.haven-tmp'))).toHaveLength(1);
        await new Promise((resolve) => setTimeout(resolve, 2000));
        expect((await store.list('')).objects.map((object) => object.key)).toEqual(['before']);
        expect(await filesOnServer(join(server.sharePath, prefix))).toEqual(['before']);
      } finally {
        await store.close();
      }
    }, 120_000);
  });

  describe('when the server dies', () => {
    it('fails a large put as TRANSIENT and leaves no visible object', async () => {
      const doomed = await startSamba();
      const store = await Promise.resolve(
        plugin.create(
          {
            host: doomed.host,
            port: doomed.port,
            share: doomed.share,
            username: doomed.username,
            password: doomed.password,
            timeoutMs: 3000,
          },
          { name: 'smb-crash' },
        ),
      );
      try {
        await store.put('before', Buffer.from('kept'));
        const pattern = new TestPattern('smb-crash');
        let killed: Promise<void> | undefined;
        const put = store.put(
          'big',
          pattern.stream(256 * MiB, {
            onBytes: (sent) => {
              if (sent >= 16 * MiB && killed === undefined) killed = doomed.kill();
            },
          }),
        );
        await expect(put).rejects.toMatchObject({ code: 'TRANSIENT' });
        await killed;
        // What the share holds: the old object, and at most a hidden temporary, never "big".
        const files = await filesOnServer(doomed.sharePath);
        expect(files.filter((name) => !name.startsWith('.haven-tmp'))).toEqual(['before']);
      } finally {
        await store.close();
        await doomed.stop();
      }
    }, 120_000);
  });
});
