import { rawBlocks } from './raw-blocks.reader';

const BLOCK = 2 * 1024 * 1024;

async function* pieces(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < data.length; offset += size) {
    // pieces arrive over time, as from a socket
    await new Promise((resolve) => setImmediate(resolve));
    yield data.subarray(offset, offset + size);
  }
}

async function collect(source: AsyncIterable<{ index: number; data: Buffer }>) {
  const blocks: { index: number; data: Buffer }[] = [];
  for await (const block of source) blocks.push(block);
  return blocks;
}

describe('raw block reads cut into blocks', () => {
  const size = 3 * BLOCK + 1000;
  const content = (block: number) => Buffer.alloc(block === 3 ? 1000 : BLOCK, block + 1);

  it('cuts a stream of odd-sized pieces into the listed blocks, the last one short', async () => {
    const stream = Buffer.concat([content(1), content(3)]);
    const blocks = await collect(rawBlocks(pieces(stream, 100_003), [1, 3], size, 'disk 0'));
    expect(blocks.map((b) => [b.index, b.data.length])).toEqual([
      [1, BLOCK],
      [3, 1000],
    ]);
    expect(blocks[0].data.equals(content(1))).toBe(true);
    expect(blocks[1].data.equals(content(3))).toBe(true);
  });

  it('fails on a short or long stream, naming the disk', async () => {
    await expect(collect(rawBlocks(pieces(content(0), 4096), [0, 1], size, 'disk 7'))).rejects.toThrow(
      /read of disk 7 ended after 1 of 2 block/,
    );
    const long = Buffer.concat([content(0), Buffer.alloc(10)]);
    await expect(collect(rawBlocks(pieces(long, 65536), [0], size, 'disk 7'))).rejects.toThrow(
      /read of disk 7 sent more than the 1 block/,
    );
  });
});
