import { readdir } from 'node:fs/promises';
import { scratchDir } from '@haven/testing';
import { openOrInitRepository } from './repository.first-use';
import { localRemote } from './testing/disk-pattern.fixture';

describe('a repository at its remote’s first use', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  beforeEach(async () => (dir = await scratchDir('haven-first-use-')));
  afterEach(() => dir.cleanup());

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
    const error = await openOrInitRepository(store, {
      expectedBecause: 'the catalog lists restore points on it',
    }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'REPOSITORY_MISSING' });
    expect((error as Error).message).toContain('the catalog lists restore points on it');
    expect((error as Error).message).toContain('an unmounted share');
    expect(await readdir(dir.path)).toEqual([]);
    // Where it exists, the expectation changes nothing.
    const made = await openOrInitRepository(store);
    const opened = await openOrInitRepository(store, { expectedBecause: 'it held backups' });
    expect(opened.id).toBe(made.id);
  });
});
