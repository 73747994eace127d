import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import localRemote from '@haven/remote-local';
import { initRepository, type DiskBlock } from '@haven/repository';
import type { RemoteStore } from '@haven/remote-sdk';
import { scratchDir } from '@haven/testing';
import { BlockBufferPool, VHD_BLOCK_SIZE } from '@haven/vhd';
import { BlockFanout } from './block.fanout';

async function* counting(limit: number, pulled: number[]): AsyncGenerator<number, void, undefined> {
  try {
    for (let value = 0; value < limit; value++) {
      pulled.push(value);
      yield await Promise.resolve(value);
    }
  } finally {
    pulled.push(-1); // closed
  }
}

describe('BlockFanout', () => {
  it('gives every consumer every item, reading the source once', async () => {
    const pulled: number[] = [];
    const fanout = new BlockFanout(counting(50, pulled), 3);
    const seen = await Promise.all(
      [0, 1, 2].map(async (index) => {
        const values: number[] = [];
        for await (const value of fanout.consumer(index)) values.push(value);
        return values;
      }),
    );
    const all = Array.from({ length: 50 }, (_, value) => value);
    expect(seen).toEqual([all, all, all]);
    expect(pulled).toEqual([...all, -1]);
  });

  it('never reads more than one item ahead of the slowest consumer', async () => {
    const pulled: number[] = [];
    const fanout = new BlockFanout(counting(100, pulled), 2);
    const fast = (async () => {
      for await (const value of fanout.consumer(0)) expect(typeof value).toBe('number');
    })();
    const slow = fanout.consumer(1)[Symbol.asyncIterator]();
    for (let step = 0; step < 5; step++) {
      expect((await slow.next()).value).toBe(step);
      await new Promise((resolve) => setImmediate(resolve));
      expect(pulled.length).toBeLessThanOrEqual(step + 2);
    }
    await slow.return?.();
    await fast;
    expect(pulled.at(-1)).toBe(-1);
  });

  it('a consumer that stops does not hold the others back; close() stops the source', async () => {
    const pulled: number[] = [];
    const fanout = new BlockFanout(counting(1000, pulled), 2);
    const stopped = fanout.consumer(1)[Symbol.asyncIterator]();
    await stopped.next();
    await stopped.return?.();
    let count = 0;
    for await (const value of fanout.consumer(0)) {
      count++;
      if (value === 10) await fanout.close();
    }
    expect(count).toBe(11);
    expect(pulled.at(-1)).toBe(-1);
    expect(pulled.length).toBeLessThan(20);
  });
});

const BLOCK = VHD_BLOCK_SIZE;
const SCRIBBLE = 0xee;

/** Blocks whose buffers come from a small pool, scribbled over when given back: a reader still holding one sees garbage. */
function pooledBlocks(count: number, pool: BlockBufferPool): AsyncGenerator<DiskBlock, void, undefined> {
  return (async function* () {
    for (let index = 0; index < count; index++) {
      const data = pool.acquire();
      contentOf(index).copy(data);
      yield await Promise.resolve({
        index,
        data,
        release: () => {
          data.fill(SCRIBBLE);
          pool.release(data);
        },
      });
    }
  })();
}

function contentOf(index: number): Buffer {
  const content = Buffer.alloc(BLOCK);
  for (let offset = 0; offset < BLOCK; offset += 4) content.writeUInt32LE(index * 7919 + offset, offset);
  return content;
}

async function turns(count: number): Promise<void> {
  for (let turn = 0; turn < count; turn++) await new Promise((resolve) => setImmediate(resolve));
}

describe('BlockFanout with released buffers', () => {
  it('gives a shared buffer back only after every consumer released it (fast and slow consumer)', async () => {
    const pool = new BlockBufferPool(BLOCK, 4);
    const fanout = new BlockFanout(pooledBlocks(40, pool), 2);
    const consume = async (index: number, delay: number): Promise<number[]> => {
      const bad: number[] = [];
      for await (const block of fanout.consumer(index)) {
        // Hold the block a while (another consumer may release it meanwhile), then check it.
        await turns(delay);
        if (!block.data.equals(contentOf(block.index))) bad.push(block.index);
        block.release?.();
      }
      return bad;
    };
    expect(await Promise.all([consume(0, 0), consume(1, 5)])).toEqual([[], []]);
    expect(pool.inUse).toBe(0);
    // Buffers were reused: far fewer allocated than blocks.
    expect(pool.allocated).toBeLessThanOrEqual(4);
  });

  it('a consumer that stops no longer holds back the blocks it was still to receive; one it kept unreleased is never reused', async () => {
    const pool = new BlockBufferPool(BLOCK, 4);
    const fanout = new BlockFanout(pooledBlocks(20, pool), 2);
    const quitter = fanout.consumer(1)[Symbol.asyncIterator]();
    const kept = (await quitter.next()).value as DiskBlock; // block 0, never released
    await quitter.return?.();
    let seen = 0;
    for await (const block of fanout.consumer(0)) {
      expect(block.data.equals(contentOf(block.index))).toBe(true);
      block.release?.();
      seen++;
    }
    expect(seen).toBe(20);
    expect(kept.data.equals(contentOf(0))).toBe(true);
    expect(pool.inUse).toBe(1);
    expect(() => {
      kept.release?.();
      kept.release?.();
    }).toThrow(/released twice/);
    expect(pool.inUse).toBe(0);
  });

  it('through two repository writers, one slow: both restore points hold every block as it was read', async () => {
    const folder = await scratchDir('haven-fanout-');
    try {
      const stores: RemoteStore[] = [];
      for (const name of ['fast', 'slow']) {
        await mkdir(join(folder.path, name));
        stores.push(await localRemote.create({ path: join(folder.path, name) }, { name }));
      }
      const repositories = await Promise.all(
        stores.map((store) => initRepository(store, { compression: { codec: 'none' } })),
      );
      const pool = new BlockBufferPool(BLOCK, 3);
      const count = 24;
      const fanout = new BlockFanout(pooledBlocks(count, pool), 2);
      async function* slowly(blocks: AsyncIterable<DiskBlock>): AsyncGenerator<DiskBlock> {
        for await (const block of blocks) {
          await turns(20);
          yield block;
        }
      }
      const ids = await Promise.all(
        repositories.map(async (repository, index) => {
          const writer = await repository.createRestorePointWriter({ vm: { uuid: 'vm-1', name: 'vm' } });
          const blocks = fanout.consumer(index);
          await writer.writeDisk(
            { key: '0', virtualSize: count * BLOCK },
            index === 1 ? slowly(blocks) : blocks,
          );
          return (await writer.commit()).id;
        }),
      );
      for (const [index, repository] of repositories.entries()) {
        const disk = (await repository.openRestorePoint(ids[index] ?? '')).disk('0');
        for (let block = 0; block < count; block++) {
          expect((await disk.readBlock(block)).equals(contentOf(block))).toBe(true);
        }
      }
      expect(pool.inUse).toBe(0);
      expect(pool.allocated).toBeLessThan(count);
      await Promise.all(stores.map((store) => store.close()));
    } finally {
      await folder.cleanup();
    }
  });
});
