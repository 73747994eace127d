import localRemote from '@haven/remote-local';
import type { RemoteAccess } from '@haven/plugin-sdk';
import { initRepository } from '@haven/repository';
import { scratchDir } from '@haven/testing';
import { openCatalogRepository } from './catalog.repository';

describe('the repository a restore or maintenance task opens', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let access: RemoteAccess;
  let held = '';

  beforeEach(async () => {
    dir = await scratchDir('haven-catalog-repository-');
    const store = await localRemote.create({ path: dir.path }, { name: 'nas' });
    held = (await initRepository(store, { key: 'the passphrase', kdf: { N: 1024 } })).id;
    access = { id: 'remote-id', name: 'nas', type: 'local', store, repositoryPassphrase: 'the passphrase' };
  });
  afterEach(async () => {
    await access.store.close();
    await dir.cleanup();
  });

  it('is the one recorded for the remote', async () => {
    expect((await openCatalogRepository({ ...access, repositoryId: held })).id).toBe(held);
  });

  it('is opened as before where no id is recorded yet', async () => {
    expect((await openCatalogRepository(access)).id).toBe(held);
  });

  it('is refused when the remote now holds another repository: a restore never reads from it', async () => {
    const recorded = 'b7f3c2d1-0000-4000-8000-000000000001';
    await expect(openCatalogRepository({ ...access, repositoryId: recorded })).rejects.toMatchObject({
      code: 'REPOSITORY_REPLACED',
      message: expect.stringContaining(`remote nas holds repository ${held}, not repository ${recorded}`),
    });
  });
});
