import type { Driver, QueryRunner } from 'typeorm';

/** How long a transaction waits for another's end before it goes on beside it (logged). */
export const PGLITE_TRANSACTION_WAIT_MS = 15_000;

/** The one session of an embedded PGlite catalog: which query runner's transaction holds it. */
class SessionTurn {
  private holder: QueryRunner | undefined;
  private readonly waiting: (() => void)[] = [];

  /** Waits for the session (true), or gives up after `waitMs` (false: go on without it). */
  async take(runner: QueryRunner, waitMs: number): Promise<boolean> {
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
    return true;
  }

  give(runner: QueryRunner): void {
    if (this.holder !== runner) return;
    this.holder = undefined;
    this.waiting.shift()?.();
  }
}

type Depth = { transactionDepth: number };

/**
 * Embedded PGlite is one Postgres session shared by every query runner: two transactions open at
 * once become one (a second BEGIN is ignored), so the first COMMIT or ROLLBACK ends both, and a
 * rollback of one erases what the other committed. This makes a query runner's top-level
 * transaction wait until the one in progress ends. A transaction still waiting after `waitMs`
 * (one that waits on work which itself needs the catalog would never see its turn) goes on as
 * before, and `onLongWait` says so.
 */
export function takeTurnsForTransactions(
  driver: Driver,
  onLongWait: (waitedMs: number) => void,
  waitMs = PGLITE_TRANSACTION_WAIT_MS,
): void {
  const session = new SessionTurn();
  const createQueryRunner = driver.createQueryRunner.bind(driver);
  driver.createQueryRunner = (mode) => {
    const runner = createQueryRunner(mode);
    const depth = (): number => (runner as unknown as Depth).transactionDepth;
    const start = runner.startTransaction.bind(runner);
    const commit = runner.commitTransaction.bind(runner);
    const rollback = runner.rollbackTransaction.bind(runner);
    const release = runner.release.bind(runner);
    runner.startTransaction = async (isolationLevel) => {
      if (depth() === 0 && !(await session.take(runner, waitMs))) onLongWait(waitMs);
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
    runner.release = async () => {
      session.give(runner);
      await release();
    };
    return runner;
  };
}
