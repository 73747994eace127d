import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DATA_PATH_THREAD_POOL_SIZE } from './thread-pool.sizing';

const run = promisify(execFile);
const root = join(__dirname, '../../../..');
/** Pool threads the probe occupies: more than Node's default of 4, fewer than the data path's 16. */
const OCCUPIED = 8;
/**
 * How long the file call may take before the pool counts as blocked. Where the pool should be
 * free, the call answers in milliseconds and a loaded machine must not turn it into a failure:
 * a long wait. Where it should be blocked, the call cannot complete at all: a short one.
 */
const FREE_PATIENCE_MS = 60_000;
const BLOCKED_PATIENCE_MS = 3_000;

/**
 * In a child process that loads the transfer worker's modules, calls sizeThreadPoolForDataPath as
 * the worker's entry point does, then blocks OCCUPIED pool threads (each opening a FIFO nobody
 * writes to yet): 'free' when a file call still completes meanwhile, 'blocked' when it waits
 * behind them (a pool of OCCUPIED threads or fewer).
 */
async function probe(env: NodeJS.ProcessEnv, patienceMs: number): Promise<{ pool: string; size: number }> {
  const folder = await mkdtemp(join(tmpdir(), 'haven-thread-pool-'));
  try {
    const script = `
      require('@haven/service-transfer');
      const { sizeThreadPoolForDataPath } = require('@haven/service-core');
      const size = sizeThreadPoolForDataPath();
      const { execFileSync } = require('node:child_process');
      const { closeSync, constants, openSync, promises } = require('node:fs');
      const fifos = Array.from({ length: ${OCCUPIED} }, (_, i) => ${JSON.stringify(folder)} + '/fifo-' + i);
      execFileSync('mkfifo', fifos);
      const readers = fifos.map((fifo) => promises.open(fifo, 'r'));
      const answer = Promise.race([
        promises.stat(${JSON.stringify(folder)}).then(() => 'free'),
        new Promise((resolve) => setTimeout(() => resolve('blocked'), ${patienceMs})),
      ]);
      answer.then(async (pool) => {
        // Opened read-write (never blocks on Linux), each FIFO has a writer: the opens return.
        const writers = fifos.map((fifo) => openSync(fifo, constants.O_RDWR));
        for (const handle of await Promise.all(readers)) await handle.close();
        writers.forEach((fd) => closeSync(fd));
        process.stdout.write(JSON.stringify({ pool, size }));
        // Without waiting for the patience timer: every pool thread is free again by now.
        process.exit(0);
      });
    `;
    // Through bin/run.js, as `npm start:transfer` runs the worker (its loader is part of the check).
    const entry = join(folder, 'probe.js');
    await writeFile(entry, script);
    const { stdout } = await run(process.execPath, [join(root, 'bin/run.js'), entry], {
      cwd: root,
      env,
      timeout: 120_000,
    });
    return JSON.parse(stdout) as { pool: string; size: number };
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

describe('sizeThreadPoolForDataPath', () => {
  const withoutSetting = { ...process.env };
  delete withoutSetting['UV_THREADPOOL_SIZE'];

  it('gives a transfer worker a pool larger than Node default, after its modules loaded', async () => {
    expect(DATA_PATH_THREAD_POOL_SIZE).toBeGreaterThan(OCCUPIED);
    // With the default pool of 4, the file call would wait behind the blocked FIFO opens.
    await expect(probe(withoutSetting, FREE_PATIENCE_MS)).resolves.toEqual({
      pool: 'free',
      size: DATA_PATH_THREAD_POOL_SIZE,
    });
  }, 150_000);

  it("keeps the operator's UV_THREADPOOL_SIZE", async () => {
    await expect(probe({ ...withoutSetting, UV_THREADPOOL_SIZE: '4' }, BLOCKED_PATIENCE_MS)).resolves.toEqual(
      {
        pool: 'blocked',
        size: 4,
      },
    );
  }, 150_000);
});
