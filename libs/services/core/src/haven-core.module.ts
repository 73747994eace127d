import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type DynamicModule, Global, Inject, Module, type OnApplicationShutdown } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { type Bus, createBus } from '@haven/bus';
import type { HavenConfig } from '@haven/config';
import { bootstrapCatalog, openCatalog, SecretBox, TenantEntity } from '@haven/db';
import { HavenMetrics, JsonLogger } from '@haven/observability';
import { PluginRegistry } from '@haven/plugin-sdk';
import {
  HAVEN_BUS,
  HAVEN_CONFIG,
  HAVEN_LOGGER,
  HAVEN_METRICS,
  HAVEN_PLUGINS,
  HAVEN_PROCESS,
  HAVEN_SECRETS,
  type HavenProcessInfo,
  type ProcessRole,
} from './core.tokens';
import { HealthController } from './health.controller';
import { JobResourceProvider } from './job.resources';
import { resolveMasterKey } from './master-key.source';
import { RemoteOpener } from './remote.opener';
import { RepositoryOpener } from './repository.opener';

/** Non-catalog processes wait this long for the catalog process to apply migrations. */
const SCHEMA_WAIT_MS = 60_000;

async function openCatalogFor(
  config: HavenConfig,
  roles: readonly ProcessRole[],
  logger: JsonLogger,
): Promise<DataSource> {
  const database = config.databaseUrl
    ? ({ kind: 'postgres', url: config.databaseUrl } as const)
    : ({ kind: 'pglite', dataDir: join(config.dataDir, 'catalog') } as const);
  const owner = roles.includes('catalog');
  const dataSource = await openCatalog(database, { migrate: owner });
  if (owner) return dataSource;
  const deadline = Date.now() + SCHEMA_WAIT_MS;
  for (;;) {
    const ready = await dataSource
      .showMigrations()
      .then(
        async (pending) =>
          !pending && (await dataSource.getRepository(TenantEntity).count({ where: { isSystem: true } })) > 0,
      )
      .catch(() => false);
    if (ready) return dataSource;
    if (Date.now() > deadline) {
      await dataSource.destroy();
      throw new Error(
        'The catalog schema is not ready after 60 s: start the catalog service (it applies migrations) first',
      );
    }
    logger.log('waiting for the catalog service to apply migrations', 'HavenCore');
    await sleep(1000);
  }
}

/** Closes the bus (draining in-flight work) and the catalog after every other module has stopped. */
class CoreLifecycle implements OnApplicationShutdown {
  constructor(
    @Inject(HAVEN_BUS) private readonly bus: Bus,
    private readonly dataSource: DataSource,
  ) {}

  async onApplicationShutdown(): Promise<void> {
    await this.bus.close();
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
  }
}

/**
 * What every Haven process shares: config, logs, metrics, the catalog connection, the bus, sealed
 * secrets, the plugin registry, `/health` and `/metrics`. Each process role adds its own module.
 */
@Global()
@Module({})
export class HavenCoreModule {
  static forRoot(config: HavenConfig, roles: readonly ProcessRole[]): DynamicModule {
    const logger = new JsonLogger(roles.length === 1 ? (roles[0] ?? 'haven') : 'haven', config.logLevel);
    return {
      module: HavenCoreModule,
      controllers: [HealthController],
      providers: [
        { provide: HAVEN_CONFIG, useValue: config },
        { provide: HAVEN_LOGGER, useValue: logger },
        { provide: HAVEN_METRICS, useValue: new HavenMetrics(roles.join('+')) },
        { provide: HAVEN_SECRETS, useFactory: () => new SecretBox(resolveMasterKey(config)) },
        // Plugins load first: a broken plugin stops the boot before anything connects.
        { provide: HAVEN_PLUGINS, useFactory: () => PluginRegistry.load(config.plugins) },
        {
          provide: DataSource,
          inject: [HAVEN_PLUGINS],
          useFactory: () => openCatalogFor(config, roles, logger),
        },
        {
          provide: HAVEN_BUS,
          useFactory: () =>
            config.natsUrl
              ? createBus({
                  driver: 'nats',
                  url: config.natsUrl,
                  name: config.instanceName,
                  prefix: config.natsPrefix,
                })
              : createBus({ driver: 'memory', name: config.instanceName }),
        },
        {
          provide: HAVEN_PROCESS,
          inject: [DataSource, HAVEN_SECRETS],
          useFactory: async (dataSource: DataSource, secrets: SecretBox): Promise<HavenProcessInfo> => {
            let systemTenantId: string;
            if (roles.includes('catalog')) {
              const result = await bootstrapCatalog(dataSource, secrets);
              systemTenantId = result.systemTenantId;
              if (result.createdAdminKey !== undefined) announceAdminKey(config, result.createdAdminKey);
            } else {
              systemTenantId = (
                await dataSource.getRepository(TenantEntity).findOneByOrFail({ isSystem: true })
              ).id;
            }
            return { roles, instanceName: config.instanceName, startedAt: new Date(), systemTenantId };
          },
        },
        CoreLifecycle,
        RemoteOpener,
        RepositoryOpener,
        JobResourceProvider,
      ],
      exports: [
        HAVEN_CONFIG,
        HAVEN_LOGGER,
        HAVEN_METRICS,
        HAVEN_SECRETS,
        HAVEN_PLUGINS,
        HAVEN_BUS,
        HAVEN_PROCESS,
        DataSource,
        // Opening remotes, repositories and a job's resources: every role that moves data needs them.
        RemoteOpener,
        RepositoryOpener,
        JobResourceProvider,
      ],
    };
  }
}

/** The initial admin key is shown once, on the console and in `$HAVEN_DATA/admin-key` (mode 600). */
function announceAdminKey(config: HavenConfig, key: string): void {
  mkdirSync(config.dataDir, { recursive: true });
  const file = join(config.dataDir, 'admin-key');
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  process.stdout.write(
    `\n  Haven created its first admin API key (shown once; also saved to ${file}):\n\n    ${key}\n\n` +
      `  Use it as: Authorization: Bearer <key>, or: haven login --url <gateway URL> --key <key>\n\n`,
  );
}
