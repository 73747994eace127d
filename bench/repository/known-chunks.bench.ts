// Memory of what a full backup's writer holds to skip chunks the repository already has
// (`knownChunks: 'list'`): the repository's listing kept as a Map of keys, sizes and dates, then a
// Set of id strings (the baseline, as before session 12), against SortedChunkIds (32 bytes per id),
// for the same ids in listing order. Each side runs in a process of its own.
//   node --expose-gc bin/run.js bench/repository/known-chunks.bench.ts [--chunks 1000000]
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { SortedChunkIds } from '@haven/repository';
import { arg } from '../bench.kit';
import { runSideProcess } from './memory.kit';

const chunks = arg('chunks', 1_000_000);
const sideAt = process.argv.indexOf('--side');
const side = sideAt < 0 ? '' : (process.argv[sideAt + 1] ?? '');

/**
 * Chunk ids in ascending order, as a listing of chunks/ gives them, in one buffer (kept alive to
 * the end: it is the input, not what is measured): a 4-byte rank, then hash bytes.
 */
function listedIds(count: number): Buffer {
  const ids = Buffer.alloc(count * 32);
  for (let n = 0; n < count; n++) {
    ids.writeUInt32BE(n, n * 32);
    createHash('sha256')
      .update(String(n))
      .digest()
      .copy(ids, n * 32 + 4, 0, 28);
  }
  return ids;
}

function heldBytes(): number {
  (globalThis as { gc?: () => void }).gc?.();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

function measure(which: 'baseline' | 'sorted'): void {
  const ids = listedIds(chunks);
  const idAt = (n: number): Buffer => ids.subarray(n * 32, (n + 1) * 32);
  const step = Math.max(1, Math.floor(chunks / 3072));
  const probes = Array.from({ length: Math.min(3072, chunks) }, (_, n) =>
    Buffer.from(idAt((n * step) % chunks)),
  );
  const before = heldBytes();
  const started = performance.now();
  if (which === 'baseline') {
    const listing = new Map<string, { size: number; modifiedAt: Date }>();
    for (let n = 0; n < chunks; n++)
      listing.set(idAt(n).toString('hex'), { size: 2 * 1024 * 1024 + 16, modifiedAt: new Date() });
    const known = new Set<string>();
    for (const hex of listing.keys()) known.add(Buffer.from(hex, 'hex').toString('latin1'));
    // Both are alive at once here: the peak. The writer then kept the Set.
    const peak = heldBytes() - before;
    listing.clear();
    const kept = heldBytes() - before;
    report(which, peak, kept, started, probes, (id) => known.has(id.toString('latin1')), ids);
  } else {
    // As ChunkStore.listIds takes a listing in key order.
    const known = new SortedChunkIds();
    for (let n = 0; n < chunks; n++) if (!known.appendAscending(idAt(n))) known.add(idAt(n));
    const peak = heldBytes() - before;
    report(which, peak, peak, started, probes, (id) => known.has(id), ids);
  }
}

function report(
  which: string,
  peak: number,
  kept: number,
  started: number,
  probes: Buffer[],
  has: (id: Buffer) => boolean,
  input: Buffer,
): void {
  const built = performance.now() - started;
  const lookupStart = performance.now();
  const found = probes.filter(has).length;
  const lookups = performance.now() - lookupStart;
  console.log(
    JSON.stringify({
      which,
      peakMiB: peak / 2 ** 20,
      keptMiB: kept / 2 ** 20,
      buildMs: built,
      lookupMs: lookups,
      found,
      inputBytes: input.length,
    }),
  );
}

if (side === 'baseline' || side === 'sorted') {
  measure(side);
} else {
  const run = (
    which: string,
  ): { peakMiB: number; keptMiB: number; buildMs: number; lookupMs: number; found: number } =>
    runSideProcess(__filename, ['--chunks', String(chunks), '--side', which]);
  const baseline = run('baseline');
  const sorted = run('sorted');
  console.log(`known chunks of a repository holding ${chunks} chunks (3,072 lookups each side):`);
  console.log(
    `  listing Map + Set<string> (before): peak ${baseline.peakMiB.toFixed(0)} MiB, kept ${baseline.keptMiB.toFixed(0)} MiB, built in ${baseline.buildMs.toFixed(0)} ms, lookups ${baseline.lookupMs.toFixed(1)} ms`,
  );
  console.log(
    `  SortedChunkIds:                     peak ${sorted.peakMiB.toFixed(0)} MiB, kept ${sorted.keptMiB.toFixed(0)} MiB, built in ${sorted.buildMs.toFixed(0)} ms, lookups ${sorted.lookupMs.toFixed(1)} ms`,
  );
  console.log(
    `  peak ${(sorted.peakMiB / baseline.peakMiB).toFixed(3)}x the baseline; every probe found: ${baseline.found === 3072 && sorted.found === 3072}`,
  );
}
