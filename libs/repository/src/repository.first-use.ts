import type { RemoteStore } from '@haven/remote-sdk';
import { initRepository, openRepository, type InitRepositoryOptions, type Repository } from './repository';
import { isRepositoryError, RepositoryError } from './repository.errors';

export interface FirstUseOptions extends InitRepositoryOptions {
  /**
   * Why the remote must already hold a repository, when something says it did (the catalog lists
   * restore points on it): then a missing repository.json is refused instead of starting a new
   * repository, which would put backups on whatever the remote's storage now is (an unmounted
   * share's empty folder, another bucket) and leave the older ones unreachable.
   */
  expectedBecause?: string;
}

/**
 * Opens the repository on `store`, or initialises one on a remote's first use. Concurrent first
 * uses settle on one repository (the loser opens the winner's).
 */
export async function openOrInitRepository(
  store: RemoteStore,
  options: FirstUseOptions = {},
): Promise<Repository> {
  const { expectedBecause, ...init } = options;
  const open = init.key !== undefined ? { key: init.key } : {};
  try {
    return await openRepository(store, open);
  } catch (error) {
    if (!isRepositoryError(error, 'NOT_INITIALIZED')) throw error;
    if (expectedBecause !== undefined)
      throw new RepositoryError(
        'REPOSITORY_MISSING',
        `remote ${store.name} holds no repository (no repository.json) although ${expectedBecause}: its storage is not where the backups went (an unmounted share, another bucket or prefix, an emptied folder?). Haven does not start a new repository there; make the remote's storage available again, or, if that repository is lost for good, add the storage as a new remote`,
        { remote: store.name, key: 'repository.json' },
        { cause: error },
      );
  }
  try {
    return await initRepository(store, init);
  } catch (error) {
    // Another task initialised it meanwhile.
    if (!isRepositoryError(error, 'ALREADY_INITIALIZED')) throw error;
    return openRepository(store, open);
  }
}
