import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { scratchDir } from '@haven/testing';
import { initRepository } from './repository';
import { openOrInitRepository } from './repository.first-use';
import { localRemote } from './testing/disk-pattern.fixture';

describe('a repository at its remote’s first use', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  beforeEach(async () => (dir = await scratchDir('haven-first-use-')));
  afterEach(() => dir.cleanup());

  const refusal = (promise: Promise<unknown>): Promise<Error & { code?: string }> =>
    promise.then(
      () => {
        throw new Error('expected a refusal');
      },
      (caught: unknown) => caught as Error & { code?: string },
    );

  it('is initialised once, however many tasks start at the same time, then opened', async () => {
    const store = localRemote(dir.path);
    const repositories = await Promise.all(
      Array.from({ length: 4 }, () => openOrInitRepository(store, { key: 'first use', kdf: { N: 1024 } })),
    );
    expect(new Set(repositories.map((repository) => repository.id)).size).toBe(1);
    const again = await openOrInitRepository(store, { key: 'first use' });
    expect(again.id).toBe(repositories[0]?.id);
  });

  it('is refused, saying why, where a repository was expected: nothing is written', async () => {
    const store = localRemote(dir.path);
    const error = await refusal(
      openOrInitRepository(store, { expected: { because: 'the catalog lists restore points on it' } }),
    );
    expect(error).toMatchObject({ code: 'REPOSITORY_MISSING' });
    expect(error.message).toContain('the catalog lists restore points on it');
    expect(error.message).toContain('an unmounted share');
    expect(await readdir(dir.path)).toEqual([]);
    // Where it exists, the expectation changes nothing.
    const made = await openOrInitRepository(store);
    const opened = await openOrInitRepository(store, { expected: { because: 'it held backups' } });
    expect(opened.id).toBe(made.id);
  });

  it('is refused where the remote’s recorded repository is gone, though no restore point is left', async () => {
    const store = localRemote(dir.path, 'nas');
    const recorded = '0f5b1c9e-3f1a-4c52-9d3e-5a7e2b8c4d10';
    const error = await refusal(openOrInitRepository(store, { expected: { repositoryId: recorded } }));
    expect(error).toMatchObject({ code: 'REPOSITORY_MISSING', context: { remote: 'nas' }, permanent: true });
    expect(error.message).toContain('remote nas holds no repository');
    expect(error.message).toContain(`it held repository ${recorded}`);
    expect(error.message).toContain("make the remote's storage available again");
    expect(await readdir(dir.path)).toEqual([]);
  });

  it('refuses another repository in place of the recorded one, before its key is asked: nothing is written', async () => {
    const store = localRemote(dir.path, 'nas');
    const other = await initRepository(store, { key: 'another passphrase', kdf: { N: 1024 } });
    const before = await readdir(dir.path);
    const config = await readFile(join(dir.path, 'repository.json'));
    const recorded = '0f5b1c9e-3f1a-4c52-9d3e-5a7e2b8c4d10';
    const error = await refusal(
      openOrInitRepository(store, { key: 'the remote’s passphrase', expected: { repositoryId: recorded } }),
    );
    // Permanent: the worker fails the task at once instead of retrying it.
    expect(error).toMatchObject({ code: 'REPOSITORY_REPLACED', context: { remote: 'nas' }, permanent: true });
    expect(error.message).toContain(`remote nas holds repository ${other.id}, not repository ${recorded}`);
    expect(error.message).toContain('add its storage as a new remote');
    expect(await readdir(dir.path)).toEqual(before);
    expect(await readFile(join(dir.path, 'repository.json'))).toEqual(config);
  });

  it('opens the recorded repository', async () => {
    const store = localRemote(dir.path);
    const made = await openOrInitRepository(store, { key: 'first use', kdf: { N: 1024 } });
    const opened = await openOrInitRepository(store, {
      key: 'first use',
      expected: { repositoryId: made.id, because: 'the catalog lists restore points on it' },
    });
    expect(opened.id).toBe(made.id);
  });
});
