import { join } from 'node:path';
import { runScriptInFreshNode } from '@haven/testing';

/**
 * GCs by kind (8 = an incremental-marking cycle) of a child process that replaces a live set of
 * objects 40 times (old-generation churn) while 640 MiB of short-lived 64 KiB buffers pass through
 * it, as a socket hands them over; `tuned` calls tuneGarbageCollectorForDataPath first.
 */
async function gcKinds(tuned: boolean): Promise<Record<string, number>> {
  const script = `
    if (${String(tuned)})
      require(${JSON.stringify(join(__dirname, 'garbage-collector.tuning'))}).tuneGarbageCollectorForDataPath();
    const { PerformanceObserver } = require('node:perf_hooks');
    const kinds = {};
    const observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) kinds[entry.detail.kind] = (kinds[entry.detail.kind] ?? 0) + 1;
    });
    observer.observe({ entryTypes: ['gc'] });
    let live = [];
    let checksum = 0;
    for (let round = 0; round < 40; round++) {
      live = Array.from({ length: 100000 }, (_, i) => ({ i, name: 'object ' + i + round }));
      for (let i = 0; i < 256; i++) {
        const buffer = Buffer.allocUnsafe(65536);
        buffer[0] = i;
        checksum += buffer[0] + live[i].i;
      }
    }
    setTimeout(() => {
      observer.disconnect();
      process.stdout.write(JSON.stringify({ kinds, checksum }));
    }, 50);
  `;
  const stdout = await runScriptInFreshNode(script);
  return (JSON.parse(stdout) as { kinds: Record<string, number> }).kinds;
}

describe('tuneGarbageCollectorForDataPath', () => {
  it('leaves a process that streams buffers through a changing live heap with no incremental-marking cycle', async () => {
    // The same work untuned does run such cycles: the check below can fail.
    expect((await gcKinds(false))['8'] ?? 0).toBeGreaterThan(0);
    const tuned = await gcKinds(true);
    expect(tuned['8'] ?? 0).toBe(0);
    // Memory is still reclaimed, by full collections.
    expect(tuned['4'] ?? 0).toBeGreaterThan(0);
  });
});
