// Child process of disk-index.codec.spec.ts: builds a DiskIndex in a process of its own and prints
// the memory it holds as JSON. Run with --expose-gc: a shared Jest worker frees other files'
// memory during the fill, which moved the figure by megabytes either way.
// argv: <mode> <block count> [blocks written]
//   filled    every block written, each id a buffer of its own as a decoder or hasher hands them
//   sparse    a disk of <block count> blocks with only the first <blocks written> written
//   decoded   an encoded index of <block count> allocated blocks, decoded (the bytes are held before)
//   inherited as decoded, then an index inheriting it with <blocks written> blocks spread over it changed
import { DiskIndex } from '../format/disk-index.codec';

const BLOCK = 2 * 1024 * 1024;

/**
 * Heap and buffer bytes still reachable after a full collection. Twice, a turn apart: buffers
 * freed by the first are counted until their backing stores are swept.
 */
async function held(): Promise<number> {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (!collect) throw new Error('run with --expose-gc');
  collect();
  await new Promise((resolve) => setImmediate(resolve));
  collect();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

function idOf(block: number, salt = 0): Buffer {
  const id = Buffer.alloc(32);
  id.writeUInt32BE(block);
  id.writeUInt32BE(salt, 4);
  return id;
}

function writeBlocks(index: DiskIndex, blocks: number, step = 1, salt = 0): void {
  for (let n = 0; n < blocks; n++) index.set(n * step, idOf(n * step, salt));
}

/** The index built to encode it is garbage by the time the caller measures. */
function encodedIndex(blocks: number): Buffer {
  const source = new DiskIndex(blocks * BLOCK, BLOCK);
  writeBlocks(source, blocks);
  return source.encode();
}

async function main(): Promise<void> {
  const [mode = '', countText = '', writtenText = '0'] = process.argv.slice(2);
  const blocks = Number(countText);
  const written = Number(writtenText);
  let before: number;
  let result: DiskIndex;
  if (mode === 'filled' || mode === 'sparse') {
    before = await held();
    result = new DiskIndex(blocks * BLOCK, BLOCK);
    writeBlocks(result, mode === 'filled' ? blocks : written);
  } else if (mode === 'decoded' || mode === 'inherited') {
    const bytes = encodedIndex(blocks);
    before = await held();
    const base = DiskIndex.decode(bytes);
    result = base;
    if (mode === 'inherited') {
      result = DiskIndex.inheriting(base, blocks * BLOCK);
      const step = Math.floor(blocks / Math.max(1, written));
      writeBlocks(result, written, step, 1);
      // The base stays in use beside the new index, as an incremental's base does.
      if (!base.has(0)) throw new Error('the base lost a block');
    }
  } else throw new Error(`unknown mode "${mode}" (filled, sparse, decoded or inherited)`);
  const grown = (await held()) - before;
  // Read after the measurement: the index is reachable while it is measured.
  process.stdout.write(JSON.stringify({ grown, allocated: result.allocatedCount }));
}

void main();
