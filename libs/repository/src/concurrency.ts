/** Maps with at most `limit` calls in flight; results in input order; stops at the first failure. */
export async function mapConcurrent<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  await forEachIndexConcurrent(items.length, limit, async (index) => {
    results[index] = await fn(items[index], index);
  });
  return results;
}

/**
 * Calls `fn` for each index from 0 to `count` - 1, at most `limit` calls in flight; stops at the
 * first failure. For work over a compact collection that is not an array (SortedChunkIds).
 */
export async function forEachIndexConcurrent(
  count: number,
  limit: number,
  fn: (index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < count) {
      const index = next++;
      try {
        await fn(index);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const workers = Array.from({ length: Math.max(1, Math.min(limit, count)) }, () => worker());
  const settled = await Promise.allSettled(workers);
  const rejection = settled.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (rejection !== undefined) throw rejection.reason;
}
