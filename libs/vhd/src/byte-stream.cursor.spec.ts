import { Readable } from 'node:stream';
import { ByteStreamCursor } from './byte-stream.cursor';
import { lendChunks } from './lent-chunks';

const KiB = 1024;

/** `count` chunks of 64 KiB (chunk i filled with i), counting how many the source produced. */
function source(count: number, fail?: { afterChunks: number }): { stream: Readable; pulled: () => number } {
  let pulled = 0;
  const stream = new Readable({
    highWaterMark: 64 * KiB,
    read() {
      if (fail !== undefined && pulled === fail.afterChunks) {
        this.destroy(new Error('socket reset'));
        return;
      }
      if (pulled === count) {
        this.push(null);
        return;
      }
      this.push(Buffer.alloc(64 * KiB, pulled++ & 0xff));
    },
  });
  return { stream, pulled: () => pulled };
}

describe('ByteStreamCursor over a Readable', () => {
  it('reads exact lengths across chunk boundaries, in order, then reports the end', async () => {
    const { stream } = source(40);
    const cursor = new ByteStreamCursor(stream);
    const head = await cursor.read(100);
    expect(head.equals(Buffer.alloc(100, 0))).toBe(true);
    const block = Buffer.alloc(2048 * KiB);
    expect(await cursor.readInto(block)).toBe(2048 * KiB);
    // Bytes 100 .. 100 + 2 MiB: the rest of chunk 0, chunks 1..31, 100 bytes of chunk 32.
    expect(block[0]).toBe(0);
    expect(block[64 * KiB - 100]).toBe(1);
    expect(block[block.length - 1]).toBe(32);
    expect(cursor.position).toBe(100 + 2048 * KiB);
    // 40 chunks in all: 512 KiB - 100 bytes are left.
    expect(await cursor.skip(8 * 64 * KiB)).toBe(8 * 64 * KiB - 100);
    expect(await cursor.atEnd()).toBe(true);
    expect((await cursor.read(10)).length).toBe(0);
  });

  it('pulls from the source only as far as it is asked (back-pressure)', async () => {
    const { stream, pulled } = source(1000);
    const cursor = new ByteStreamCursor(stream);
    await cursor.read(64 * KiB);
    await new Promise((resolve) => setTimeout(resolve, 20));
    // What was asked, plus the stream's own read-ahead: a few chunks, not the 1000.
    expect(pulled()).toBeLessThan(8);
    await cursor.close();
    expect(stream.destroyed).toBe(true);
  });

  it('fails with the source error, and when the source closes before its end', async () => {
    const failing = source(100, { afterChunks: 3 });
    const cursor = new ByteStreamCursor(failing.stream);
    await expect(cursor.readInto(Buffer.alloc(1024 * KiB))).rejects.toThrow(/socket reset/);

    const closing = new Readable({ read: () => undefined });
    const early = new ByteStreamCursor(closing);
    closing.push(Buffer.alloc(10));
    const reading = early.read(100);
    await new Promise((resolve) => setImmediate(resolve));
    closing.destroy();
    await expect(reading).rejects.toThrow(/closed before its end/);
  });
});

describe('ByteStreamCursor over a stream of lent chunks', () => {
  it('copies every read and gives each chunk back once, only after reading all of it', async () => {
    const chunks = [Buffer.alloc(10, 1), Buffer.alloc(10, 2), Buffer.alloc(10, 3)];
    const stream = Readable.from(chunks, { objectMode: false });
    const givenBack: Buffer[] = [];
    lendChunks(stream, { giveBack: (chunk) => givenBack.push(chunk) });
    const cursor = new ByteStreamCursor(stream);

    const head = await cursor.read(4); // inside the first chunk: a copy, nothing given back
    expect(givenBack).toEqual([]);
    chunks[0].fill(9); // the producer filling that memory again does not reach what was read
    expect([...head]).toEqual([1, 1, 1, 1]);

    const across = Buffer.alloc(12);
    expect(await cursor.readInto(across)).toBe(12); // the rest of chunk 1 and 6 bytes of chunk 2
    expect(givenBack.map((chunk) => chunk.buffer)).toEqual([chunks[0].buffer]);

    expect(await cursor.skip(4)).toBe(4); // the rest of chunk 2, skipped without a copy
    expect(givenBack.map((chunk) => chunk.buffer)).toEqual([chunks[0].buffer, chunks[1].buffer]);
    expect([...(await cursor.read(100))]).toEqual(Array(10).fill(3));
    expect(givenBack).toHaveLength(3);
    expect(cursor.position).toBe(30);
    expect(await cursor.atEnd()).toBe(true);
  });
});
