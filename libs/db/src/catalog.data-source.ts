import { mkdirSync } from 'node:fs';
import { DataSource } from 'typeorm';
import { PGliteDriver } from 'typeorm-pglite';
import { CATALOG_ENTITIES } from './entities';
import { CATALOG_MIGRATIONS } from './migrations';
import { takeTurnsForTransactions } from './pglite-transactions';

export type CatalogDatabase = { kind: 'postgres'; url: string } | { kind: 'pglite'; dataDir: string };

/**
 * The catalog's connection: real Postgres when a URL is given, PGlite (Postgres in WebAssembly)
 * in a folder otherwise. Same entities, same hand-written migrations; never `synchronize`.
 */
export function createCatalogDataSource(database: CatalogDatabase): DataSource {
  const common = {
    type: 'postgres' as const,
    entities: CATALOG_ENTITIES,
    migrations: CATALOG_MIGRATIONS,
    migrationsTableName: 'haven_migrations',
    synchronize: false,
    logging: false,
  };
  if (database.kind === 'postgres') {
    return new DataSource({ ...common, url: database.url, extra: { max: 10, application_name: 'haven' } });
  }
  mkdirSync(database.dataDir, { recursive: true });
  const dataSource = new DataSource({
    ...common,
    driver: new PGliteDriver({ dataDir: database.dataDir }).driver,
    uuidExtension: 'pgcrypto',
    installExtensions: false,
  });
  // One session for every query runner: transactions must take turns (pglite-transactions.ts).
  takeTurnsForTransactions(dataSource, (waitedMs) =>
    process.emitWarning(
      `catalog work waited ${waitedMs} ms for a transaction to end and went on beside it`,
      'HavenPGliteWarning',
    ),
  );
  return dataSource;
}

/** Opens the catalog and applies pending migrations (each in its own transaction). */
export async function openCatalog(
  database: CatalogDatabase,
  options: { migrate: boolean },
): Promise<DataSource> {
  const dataSource = createCatalogDataSource(database);
  await dataSource.initialize();
  if (options.migrate) await dataSource.runMigrations({ transaction: 'each' });
  return dataSource;
}
