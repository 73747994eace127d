import { Injectable, Inject, Optional } from '@nestjs/common';
import type { HavenConfig } from '@haven/config';
import { DataSource } from 'typeorm';
import {
  PoolEntity,
  recordRemoteRepository,
  RemoteEntity,
  newestCatalogRestorePointKey,
  type SecretBox,
} from '@haven/db';
import type { JobPlanResources, PoolAccess, PoolSummary, RemoteAccess } from '@haven/plugin-sdk';
import { HAVEN_CONFIG, HAVEN_SECRETS } from './core.tokens';
import { RemoteOpener } from './remote.opener';

/** A pool or remote a job refers to that is gone or belongs to another tenant. */
export class JobResourceMissingError extends Error {
  readonly code = 'RESOURCE_MISSING';
  constructor(kind: 'pool' | 'remote', id: string) {
    super(`The ${kind} ${id} of this job no longer exists`);
    this.name = 'JobResourceMissingError';
  }
}

/** Gives planners and executors the tenant's pools and remotes, secrets unsealed in memory only. */
@Injectable()
export class JobResourceProvider {
  constructor(
    private readonly dataSource: DataSource,
    private readonly opener: RemoteOpener,
    @Inject(HAVEN_SECRETS) private readonly secrets: SecretBox,
    /** The process's settings for XAPI connections (absent in tests that build this by hand). */
    @Optional() @Inject(HAVEN_CONFIG) private readonly config?: Pick<HavenConfig, 'xapiEventDebounceMs'>,
  ) {}

  forTenant(tenantId: string): JobPlanResources {
    return {
      pools: async (): Promise<PoolSummary[]> =>
        this.dataSource
          .getRepository(PoolEntity)
          .find({ select: { id: true, name: true }, where: { tenantId }, order: { name: 'ASC', id: 'ASC' } })
          .then((pools) => pools.map((pool) => ({ id: pool.id, name: pool.name }))),
      pool: async (poolId: string): Promise<PoolAccess> => {
        const pool = await this.dataSource.getRepository(PoolEntity).findOneBy({ id: poolId, tenantId });
        if (!pool) throw new JobResourceMissingError('pool', poolId);
        return {
          id: pool.id,
          name: pool.name,
          url: pool.url,
          username: pool.username,
          password: this.secrets.open(pool.passwordSealed, `pool:${pool.id}:password`),
          allowUnauthorized: pool.allowUnauthorized,
          ...(this.config?.xapiEventDebounceMs === undefined
            ? {}
            : { eventDebounceMs: this.config.xapiEventDebounceMs }),
        };
      },
      remote: async (remoteId: string): Promise<RemoteAccess> => {
        const remote = await this.dataSource
          .getRepository(RemoteEntity)
          .findOneBy({ id: remoteId, tenantId });
        if (!remote) throw new JobResourceMissingError('remote', remoteId);
        // The restore points only guard a remote whose repository id is not recorded yet.
        const newest =
          remote.repositoryId !== null
            ? undefined
            : await newestCatalogRestorePointKey(this.dataSource.manager, tenantId, remote.id);
        const expectation =
          remote.repositoryId !== null
            ? { repositoryId: remote.repositoryId }
            : {
                hasCatalogRestorePoints: newest !== undefined,
                ...(newest === undefined ? {} : { catalogRestorePointKey: newest }),
              };
        return {
          id: remote.id,
          name: remote.name,
          type: remote.type,
          ...expectation,
          recordRepositoryId: (repositoryId: string) =>
            recordRemoteRepository(this.dataSource.manager, tenantId, remote.id, repositoryId),
          store: await this.opener.open(remote),
          ...(remote.repositoryKeySealed === null
            ? {}
            : {
                repositoryPassphrase: this.secrets.open(
                  remote.repositoryKeySealed,
                  `remote:${remote.id}:repository-key`,
                ),
              }),
        };
      },
    };
  }
}
