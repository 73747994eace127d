import type { RemoteAccess } from '@haven/plugin-sdk';
import { openRepository, type Repository } from '@haven/repository';

/**
 * Opens the repository on a catalog remote for a restore or maintenance task: with its
 * passphrase, and only the repository recorded for the remote (another one is REPOSITORY_REPLACED,
 * so a restore never reads, and a prune never deletes, in a repository the catalog's restore
 * points did not come from).
 */
export function openCatalogRepository(remote: RemoteAccess): Promise<Repository> {
  const key = remote.repositoryPassphrase;
  return openRepository(remote.store, {
    ...(key !== undefined ? { key } : {}),
    ...(remote.repositoryId !== undefined ? { repositoryId: remote.repositoryId } : {}),
  });
}
