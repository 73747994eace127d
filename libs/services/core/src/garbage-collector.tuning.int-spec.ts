import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

describe('tuneGarbageCollectorForDataPath', () => {
  it('leaves a process streaming buffers through a live heap with no incremental-marking cycle', async () => {
    // A live heap of small objects, and 512 MiB of short-lived 64 KiB buffers (as a socket hands
    // them over); every GC is observed by kind (8 = incremental marking).
    const script = `
      require(${JSON.stringify(join(__dirname, 'garbage-collector.tuning'))}).tuneGarbageCollectorForDataPath();
      const { PerformanceObserver } = require('node:perf_hooks');
      const kinds = {};
      const observer = new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) kinds[entry.detail.kind] = (kinds[entry.detail.kind] ?? 0) + 1;
      });
      observer.observe({ entryTypes: ['gc'] });
      const live = Array.from({ length: 300000 }, (_, i) => ({ i, name: 'object ' + i }));
      let checksum = 0;
      for (let i = 0; i < 8192; i++) {
        const buffer = Buffer.allocUnsafe(65536);
        buffer[0] = i & 255;
        checksum += buffer[0] + live[i % live.length].i;
      }
      setTimeout(() => {
        observer.disconnect();
        process.stdout.write(JSON.stringify({ kinds, checksum }));
      }, 50);
    `;
    const root = join(__dirname, '../../../..');
    const { stdout } = await run(process.execPath, ['-r', '@swc-node/register', '-e', script], {
      cwd: root,
      env: { ...process.env, SWC_NODE_PROJECT: join(root, 'tsconfig.json') },
    });
    const { kinds } = JSON.parse(stdout) as { kinds: Record<string, number> };
    expect(kinds['8'] ?? 0).toBe(0);
  });
});
