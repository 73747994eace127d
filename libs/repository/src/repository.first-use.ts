import type { RemoteStore } from '@haven/remote-sdk';
import { initRepository, openRepository, type InitRepositoryOptions, type Repository } from './repository';
import { isRepositoryError, RepositoryError } from './repository.errors';

/**
 * What is known of the repository a remote held before. A remote that held one must not get a new
 * one silently: its storage is then not where the backups went (an unmounted share's empty folder,
 * another bucket), and a new repository there would leave the older backups unreachable.
 */
export interface RepositoryExpectation {
  /**
   * The id recorded for the remote's repository at its first use: that repository must be there,
   * and no other (REPOSITORY_MISSING, REPOSITORY_REPLACED).
   */
  repositoryId?: string;
  /**
   * Why a repository must be there although no id was recorded (the catalog lists restore points
   * on the remote): a missing repository.json is refused (REPOSITORY_MISSING).
   */
  because?: string;
}

export interface FirstUseOptions extends InitRepositoryOptions {
  expected?: RepositoryExpectation;
}

/**
 * Opens the repository on `store`, or initialises one on a remote's first use. Concurrent first
 * uses settle on one repository (the loser opens the winner's). Where a repository is expected,
 * nothing is written to the store when it is missing or another one is there.
 */
export async function openOrInitRepository(
  store: RemoteStore,
  options: FirstUseOptions = {},
): Promise<Repository> {
  const { expected, ...init } = options;
  const open = {
    ...(init.key !== undefined ? { key: init.key } : {}),
    ...(expected?.repositoryId !== undefined ? { repositoryId: expected.repositoryId } : {}),
  };
  try {
    return await openRepository(store, open);
  } catch (error) {
    if (!isRepositoryError(error, 'NOT_INITIALIZED')) throw error;
    const because =
      expected?.repositoryId !== undefined
        ? `it held repository ${expected.repositoryId} when Haven last used it`
        : expected?.because;
    if (because !== undefined)
      throw new RepositoryError(
        'REPOSITORY_MISSING',
        `remote ${store.name} holds no repository (no repository.json) although ${because}: its storage is not where the backups went (an unmounted share, another bucket or prefix, an emptied folder?). Haven does not start a new repository there; make the remote's storage available again, or, if that repository is lost for good, add the storage as a new remote`,
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
