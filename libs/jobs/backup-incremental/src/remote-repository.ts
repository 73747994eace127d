import type { RemoteAccess } from '@haven/plugin-sdk';
import {
  openOrInitRepository,
  RepositoryError,
  type InitRepositoryOptions,
  type Repository,
  type RepositoryExpectation,
} from '@haven/repository';

/**
 * What the catalog knows of a remote's repository: the id recorded at its first use, or, for a
 * remote used before ids were recorded, that restore points are listed on it.
 */
export function repositoryExpectation(access: RemoteAccess): RepositoryExpectation {
  if (access.repositoryId !== undefined) return { repositoryId: access.repositoryId };
  return access.hasCatalogRestorePoints === true ? { because: 'the catalog lists restore points on it' } : {};
}

/**
 * Opens the repository on a backup task's remote, or initialises it at the remote's first use,
 * refusing a storage that holds none or another one where the catalog expects its own (nothing is
 * written then); records the repository's id on the remote when none was recorded.
 */
export async function openOrInitRemoteRepository(
  access: RemoteAccess,
  options: Omit<InitRepositoryOptions, 'key'> = {},
): Promise<Repository> {
  const key = access.repositoryPassphrase;
  const repository = await openOrInitRepository(access.store, {
    ...options,
    ...(key !== undefined ? { key } : {}),
    expected: repositoryExpectation(access),
  });
  if (access.repositoryId === undefined && access.recordRepositoryId !== undefined) {
    // A remote from before ids were recorded: the repository found must be the one its backups
    // went to (it holds the catalog's newest restore point there) before it is recorded for good.
    const witness = access.catalogRestorePointKey;
    if (witness !== undefined && !(await repository.store.exists(witness)))
      throw new RepositoryError(
        'REPOSITORY_REPLACED',
        `remote ${access.name} holds repository ${repository.id}, which does not hold ${witness}, the newest restore point the catalog lists on this remote: its storage is not where the backups went (another bucket, prefix or folder?). Make the remote's storage available again; if that repository is lost for good, add the storage as a new remote`,
        { remote: access.name, key: witness },
      );
    const recorded = await access.recordRepositoryId(repository.id);
    // Another task's first use recorded another repository meanwhile: two storages answer for
    // one remote (a share mounted on one worker and not on another?).
    if (recorded !== undefined && recorded !== repository.id)
      throw new RepositoryError(
        'REPOSITORY_REPLACED',
        `remote ${access.name} holds repository ${repository.id} here, but another task recorded repository ${recorded} for it at the same time: the remote's storage is not the same for every worker (a share mounted on one machine and not on another?). Make every worker see the same storage; if this repository holds nothing, remove it`,
        { remote: access.name, key: 'repository.json' },
      );
  }
  return repository;
}
