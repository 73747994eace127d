import { DataSource } from 'typeorm';
import { PGliteDriver } from 'typeorm-pglite';
import { scratchDir } from '@haven/testing';
import { openCatalog } from './catalog.data-source';
import { takeTurnsForTransactions } from './pglite-transactions';

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error));

/**
 * A query issued outside an open transaction (by another query runner, outside its callback), which
 * that transaction then waits for, 200 ms at most: without turns the query runs inside the
 * transaction and ends first, so the transaction ends after it whatever the machine's load; with
 * turns the query waits for the transaction, which goes on after 200 ms.
 */
function outsideQuery(dataSource: DataSource): {
  issue: (sql: string) => Promise<unknown>;
  settledOrLater: () => Promise<unknown>;
} {
  let issued!: (query: { running: Promise<unknown> }) => void;
  const query = new Promise<{ running: Promise<unknown> }>((resolve) => (issued = resolve));
  return {
    issue: (sql) => {
      const running: Promise<unknown> = dataSource.query(sql);
      issued({ running });
      return running;
    },
    settledOrLater: async () => Promise.race([(await query).running.catch(() => undefined), pause(200)]),
  };
}

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
      .catch(messageOf);
    expect(await second).toBe('second fails');
    await first;
    // Without turns the second BEGIN joined the first transaction and its ROLLBACK ended both.
    expect(await catalog.query('SELECT v FROM turns')).toEqual([{ v: 'first' }]);
  });

  it('keeps a plain write made while another transaction was open when that one rolls back', async () => {
    let opened!: () => void;
    const open = new Promise<void>((resolve) => (opened = resolve));
    const plain = outsideQuery(catalog);
    const failing = catalog
      .transaction(async (tx) => {
        await tx.query(`INSERT INTO turns VALUES ('rolled back')`);
        opened();
        await plain.settledOrLater();
        throw new Error('transaction fails');
      })
      .catch(messageOf);
    await open;
    // Issued while the transaction is open, by another query runner, outside its callback.
    await plain.issue(`INSERT INTO turns VALUES ('plain')`);
    expect(await failing).toBe('transaction fails');
    expect(await catalog.query('SELECT v FROM turns')).toEqual([{ v: 'plain' }]);
  });

  it('runs a plain query while another transaction has failed a statement and not yet rolled back', async () => {
    let failed!: () => void;
    const aborted = new Promise<void>((resolve) => (failed = resolve));
    const plain = outsideQuery(catalog);
    const failing = catalog
      .transaction(async (tx) => {
        await tx.query('SELECT * FROM no_such_table').catch(() => failed());
        await plain.settledOrLater();
        await tx.query('SELECT 1');
      })
      .catch(messageOf);
    await aborted;
    // On the shared session this query would have met "current transaction is aborted".
    expect(await plain.issue(`SELECT 'fine' AS v`)).toEqual([{ v: 'fine' }]);
    expect(await failing).toMatch(/current transaction is aborted/);
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

/** A PGlite data source whose waits past `waitMs` are recorded, for `test`, then destroyed. */
async function withRecordedWaits(
  waitMs: number,
  test: (dataSource: DataSource, waits: number[]) => Promise<void>,
): Promise<void> {
  const folder = await scratchDir('haven-pglite-wait-');
  const dataSource = new DataSource({
    type: 'postgres',
    driver: new PGliteDriver({ dataDir: `${folder.path}/db` }).driver,
    uuidExtension: 'pgcrypto',
    installExtensions: false,
  });
  const waits: number[] = [];
  takeTurnsForTransactions(dataSource, (waitedMs) => waits.push(waitedMs), waitMs);
  await dataSource.initialize();
  try {
    await test(dataSource, waits);
  } finally {
    await dataSource.destroy();
    await folder.cleanup();
  }
}

describe('embedded PGlite: work a transaction waits on', () => {
  it('runs at once, inside the transaction, a plain query its callback awaits', () =>
    withRecordedWaits(300, async (dataSource, waits) => {
      await dataSource.query('CREATE TABLE turns (v text)');
      const seen = await dataSource.transaction(async (tx) => {
        await tx.query(`INSERT INTO turns VALUES ('uncommitted')`);
        // Another query runner, awaited by the callback: waiting for the turn would deadlock.
        return dataSource.query('SELECT v FROM turns');
      });
      expect(seen).toEqual([{ v: 'uncommitted' }]);
      expect(waits).toEqual([]);
    }));

  it('lets a transaction that would wait for ever go on beside the one it waits for, and says so', () =>
    withRecordedWaits(300, async (dataSource, waits) => {
      // The outer transaction waits for work that needs a transaction of its own.
      await dataSource.transaction(async (tx) => {
        await tx.query('SELECT 1');
        await dataSource.transaction((other) => other.query('SELECT 2'));
      });
      expect(waits).toEqual([300]);
    }));
});
