import { AsyncLocalStorage } from 'node:async_hooks';
import type { DataSource, QueryRunner } from 'typeorm';

/** How long a transaction or query waits for another's end before it goes on beside it (logged). */
export const PGLITE_TRANSACTION_WAIT_MS = 15_000;

/** The work a `DataSource#transaction` callback runs, and the transactions it is nested in. */
interface TransactionScope {
  readonly outer: TransactionScope | undefined;
}

const scopes = new AsyncLocalStorage<TransactionScope>();

function isWithin(scope: TransactionScope | undefined, target: TransactionScope): boolean {
  for (let at = scope; at !== undefined; at = at.outer) if (at === target) return true;
  return false;
}

/**
 * The one session of an embedded PGlite catalog: which query runner holds it (for a transaction,
 * or for one plain query), and the scope of the transaction callback it runs for.
 */
class SessionTurn {
  private holder: QueryRunner | undefined;
  private holderScope: TransactionScope | undefined;
  private readonly waiting: (() => void)[] = [];

  /** Waits for the session (true), or gives up after `waitMs` (false: go on without it). */
  async take(runner: QueryRunner, waitMs: number, scope: TransactionScope | undefined): Promise<boolean> {
    while (this.holder !== undefined) {
      const freed = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          const at = this.waiting.indexOf(wake);
          if (at >= 0) this.waiting.splice(at, 1);
          resolve(false);
        }, waitMs);
        const wake = (): void => {
          clearTimeout(timer);
          resolve(true);
        };
        this.waiting.push(wake);
      });
      if (!freed) return false;
    }
    this.holder = runner;
    this.holderScope = scope;
    return true;
  }

  give(runner: QueryRunner): void {
    if (this.holder !== runner) return;
    this.holder = undefined;
    this.holderScope = undefined;
    this.waiting.shift()?.();
  }

  /** Whether a query of `runner`, issued in `scope`, belongs to the work that holds the session. */
  belongsToHolder(runner: QueryRunner, scope: TransactionScope | undefined): boolean {
    if (this.holder === runner) return true;
    return this.holderScope !== undefined && isWithin(scope, this.holderScope);
  }
}

type Depth = { transactionDepth: number };

/**
 * Embedded PGlite is one Postgres session shared by every query runner: two transactions open at
 * once become one (a second BEGIN is ignored), so the first COMMIT or ROLLBACK ends both, and a
 * query issued meanwhile by any other runner runs inside that transaction too (a rollback erases
 * its write; an aborted transaction fails it).
 *
 * So the session is taken in turns: a query runner's top-level transaction holds it from BEGIN to
 * its end, and a plain query outside any transaction holds it while it runs. Work that a
 * transaction's callback awaits is part of that transaction, whatever runner it uses: a plain query
 * issued from within the callback (the async context of `DataSource#transaction`) runs at once, in
 * the transaction, as it would have to on one session. Anything still waiting after `waitMs` (a
 * transaction waiting on work that itself needs a new transaction would never see its turn) goes
 * on beside the holder, as before the turns, and `onLongWait` says so.
 */
export function takeTurnsForTransactions(
  dataSource: DataSource,
  onLongWait: (waitedMs: number) => void,
  waitMs = PGLITE_TRANSACTION_WAIT_MS,
): void {
  const session = new SessionTurn();
  const takeTurn = async (runner: QueryRunner): Promise<void> => {
    if (!(await session.take(runner, waitMs, scopes.getStore()))) onLongWait(waitMs);
  };

  const manager = dataSource.manager;
  const transaction = manager.transaction.bind(manager) as (...args: unknown[]) => Promise<unknown>;
  (manager as { transaction: (...args: unknown[]) => Promise<unknown> }).transaction = (...args) =>
    scopes.run({ outer: scopes.getStore() }, () => transaction(...args));

  const driver = dataSource.driver;
  const createQueryRunner = driver.createQueryRunner.bind(driver);
  driver.createQueryRunner = (mode) => {
    const runner = createQueryRunner(mode);
    const depth = (): number => (runner as unknown as Depth).transactionDepth;
    const start = runner.startTransaction.bind(runner);
    const commit = runner.commitTransaction.bind(runner);
    const rollback = runner.rollbackTransaction.bind(runner);
    const query = runner.query.bind(runner) as (...args: unknown[]) => Promise<unknown>;
    const release = runner.release.bind(runner);
    runner.startTransaction = async (isolationLevel) => {
      if (depth() === 0) await takeTurn(runner);
      try {
        await start(isolationLevel);
      } catch (error) {
        if (depth() === 0) session.give(runner);
        throw error;
      }
    };
    runner.commitTransaction = async () => {
      try {
        await commit();
      } finally {
        if (depth() === 0) session.give(runner);
      }
    };
    runner.rollbackTransaction = async () => {
      try {
        await rollback();
      } finally {
        if (depth() === 0) session.give(runner);
      }
    };
    (runner as { query: (...args: unknown[]) => Promise<unknown> }).query = async (...args) => {
      if (depth() > 0 || session.belongsToHolder(runner, scopes.getStore())) return query(...args);
      await takeTurn(runner);
      try {
        return await query(...args);
      } finally {
        session.give(runner);
      }
    };
    runner.release = async () => {
      session.give(runner);
      await release();
    };
    return runner;
  };
}
