/** Threads in libuv's pool for a process that moves disk data, unless the operator chose a size. */
export const DATA_PATH_THREAD_POOL_SIZE = 16;

/**
 * Sizes libuv's thread pool (file system calls, chunk hashing, compression) for a transfer worker
 * or an all-in-one process: Node's default of 4 let a flush's fdatasyncs, each waiting on the disk,
 * hold every thread while the next chunks' writes queued behind them (8 GiB backup bench,
 * docs/benchmarks/jobs.md: 0.6-5.9 s faster than with 4 threads over three pairs of runs, for
 * 5-10 MiB more malloc arenas with zstd + AES). An operator's
 * UV_THREADPOOL_SIZE is kept. libuv reads the variable once, when the process starts its first
 * asynchronous file, DNS, crypto or zlib call: call this first thing in an entry point (loading
 * modules makes no such call; the int-spec checks it with the transfer worker's modules loaded).
 * Returns the size in effect.
 */
export function sizeThreadPoolForDataPath(env: NodeJS.ProcessEnv = process.env): number {
  const chosen = env['UV_THREADPOOL_SIZE'];
  if (chosen === undefined || chosen.trim() === '')
    env['UV_THREADPOOL_SIZE'] = String(DATA_PATH_THREAD_POOL_SIZE);
  return Number(env['UV_THREADPOOL_SIZE']);
}
