import { InitialCatalog1764140000000 } from './1764140000000-initial-catalog.migration';

/** Every migration, in order. Add new ones at the end; never edit one that has shipped. */
export const CATALOG_MIGRATIONS = [InitialCatalog1764140000000];
