// Child process of disk-index.codec.spec.ts: fills a DiskIndex in a process of its own and prints
// the memory it holds as JSON. Run with --expose-gc: a shared Jest worker frees other files'
// memory during the fill, which moved the figure by megabytes either way.
// argv: <block count>
import { DiskIndex } from '../format/disk-index.codec';

const BLOCK = 2 * 1024 * 1024;

/** Heap and buffer bytes still reachable after a full collection. */
function held(): number {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) throw new Error('run with --expose-gc');
  collect();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

/**
 * Every block allocated, each id a buffer of its own as a decoder or hasher hands them, so an
 * index that kept the buffers it was given would hold them all.
 */
function filledIndex(blocks: number): DiskIndex {
  const index = new DiskIndex(blocks * BLOCK, BLOCK);
  for (let block = 0; block < blocks; block++) {
    const id = Buffer.alloc(32);
    id.writeUInt32BE(block);
    index.set(block, id);
  }
  return index;
}

const blocks = Number(process.argv[2]);
const before = held();
const index = filledIndex(blocks);
const grown = held() - before;
// Read after the measurement: the index is reachable while it is measured.
process.stdout.write(JSON.stringify({ grown, allocated: index.allocatedCount }));
