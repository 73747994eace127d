import { Inject, Injectable } from '@nestjs/common';
import type { RemoteEntity, SecretBox } from '@haven/db';
import { openRepository, type Repository } from '@haven/repository';
import { HAVEN_SECRETS } from './core.tokens';
import { RemoteOpener } from './remote.opener';

/** An open repository and the remote under it; `close()` releases the remote's connections. */
export interface OpenedRepository {
  repository: Repository;
  close(): Promise<void>;
}

/**
 * Opens the backup repository on a catalog remote, with its passphrase unsealed in memory only,
 * refusing another repository than the one recorded for the remote.
 */
@Injectable()
export class RepositoryOpener {
  constructor(
    private readonly remotes: RemoteOpener,
    @Inject(HAVEN_SECRETS) private readonly secrets: SecretBox,
  ) {}

  async open(remote: RemoteEntity): Promise<OpenedRepository> {
    const store = await this.remotes.open(remote);
    try {
      const key =
        remote.repositoryKeySealed === null
          ? undefined
          : this.secrets.open(remote.repositoryKeySealed, `remote:${remote.id}:repository-key`);
      // Only the repository recorded for the remote: another one there is REPOSITORY_REPLACED.
      const repository = await openRepository(store, {
        ...(key !== undefined ? { key } : {}),
        ...(remote.repositoryId !== null ? { repositoryId: remote.repositoryId } : {}),
      });
      return { repository, close: () => store.close() };
    } catch (error) {
      await store.close();
      throw error;
    }
  }
}
