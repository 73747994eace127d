import { DataSource } from 'typeorm';
import { PGliteDriver } from 'typeorm-pglite';
import { scratchDir } from '@haven/testing';
import { openCatalog } from './catalog.data-source';
import { takeTurnsForTransactions } from './pglite-transactions';

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('embedded PGlite catalog: transactions take turns on its one session', () => {
  let folder: { path: string; cleanup: () => Promise<void> };
  let catalog: DataSource;

  beforeAll(async () => {
    folder = await scratchDir('haven-pglite-turns-');
    catalog = await openCatalog({ kind: 'pglite', dataDir: `${folder.path}/catalog` }, { migrate: false });
    await catalog.query('CREATE TABLE turns (v text)');
  });
  afterAll(async () => {
    await catalog.destroy();
    await folder.cleanup();
  });
  beforeEach(() => catalog.query('DELETE FROM turns'));

  it('keeps what one transaction committed when another, begun meanwhile, rolls back', async () => {
    const first = catalog.transaction(async (tx) => {
      await tx.query(`INSERT INTO turns VALUES ('first')`);
      await pause(200);
    });
    const second = catalog
      .transaction(async (tx) => {
        await tx.query(`INSERT INTO turns VALUES ('second')`);
        throw new Error('second fails');
      })
      .catch((error: unknown) => (error instanceof Error ? error.message : String(error)));
    expect(await second).toBe('second fails');
    await first;
    // Without turns the second BEGIN joined the first transaction and its ROLLBACK ended both.
    expect(await catalog.query('SELECT v FROM turns')).toEqual([{ v: 'first' }]);
  });

  it('runs a transaction nested in another (a savepoint) on its turn', async () => {
    await catalog.transaction(async (tx) => {
      await tx.query(`INSERT INTO turns VALUES ('outer')`);
      await tx.transaction(async (inner) => {
        await inner.query(`INSERT INTO turns VALUES ('inner')`);
      });
    });
    expect(await catalog.query('SELECT v FROM turns ORDER BY v')).toEqual([{ v: 'inner' }, { v: 'outer' }]);
  });
});

describe('embedded PGlite: a transaction that would wait for ever', () => {
  it('goes on beside the one it waits for after the wait limit, and says so', async () => {
    const folder = await scratchDir('haven-pglite-wait-');
    const dataSource = new DataSource({
      type: 'postgres',
      driver: new PGliteDriver({ dataDir: `${folder.path}/db` }).driver,
      uuidExtension: 'pgcrypto',
      installExtensions: false,
    });
    const waits: number[] = [];
    takeTurnsForTransactions(dataSource.driver, (waitedMs) => waits.push(waitedMs), 300);
    await dataSource.initialize();
    try {
      // The outer transaction waits for work that needs a transaction of its own.
      await dataSource.transaction(async (tx) => {
        await tx.query('SELECT 1');
        await dataSource.transaction((other) => other.query('SELECT 2'));
      });
      expect(waits).toEqual([300]);
    } finally {
      await dataSource.destroy();
      await folder.cleanup();
    }
  });
});
