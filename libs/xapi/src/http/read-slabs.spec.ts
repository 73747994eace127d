import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ReadSlabs } from './read-slabs';

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

/** Fills the current slab with one read of `length` bytes and lends it whole. */
function readAndLend(slabs: ReadSlabs, length: number): Buffer {
  slabs.nextReadBuffer();
  const chunk = slabs.filled(length);
  slabs.lend(chunk);
  return chunk;
}

describe('ReadSlabs', () => {
  it('fills a slab again only once every chunk lent from it is back', () => {
    const slabs = new ReadSlabs(100, 20);
    const first = readAndLend(slabs, 50);
    const second = readAndLend(slabs, 40); // 10 bytes left, less than a read's room
    slabs.giveBack(first);
    // `second` is still out: the next read goes to another slab.
    const third = readAndLend(slabs, 30);
    expect(third.buffer).not.toBe(first.buffer);
    slabs.giveBack(second.subarray(25)); // the unread tail stands for the whole chunk
    readAndLend(slabs, 70); // the other slab is full now: the first one, all back, is filled again
    const again = slabs.nextReadBuffer();
    expect(again.buffer).toBe(first.buffer);
    expect(again.byteOffset - first.byteOffset).toBe(0);
  });

  it('keeps filling the current slab from its start when all it lent came back', () => {
    const slabs = new ReadSlabs(100, 20);
    const chunk = readAndLend(slabs, 90);
    slabs.giveBack(chunk);
    const next = slabs.nextReadBuffer();
    expect(next.buffer).toBe(chunk.buffer);
    expect(next.length).toBe(100);
  });

  it('ignores a chunk that is not one of its slabs', () => {
    const slabs = new ReadSlabs(100, 20);
    const lent = readAndLend(slabs, 90);
    slabs.giveBack(Buffer.alloc(10));
    // `lent` is still out, so the next read needs another slab.
    expect(slabs.nextReadBuffer().buffer).not.toBe(lent.buffer);
  });

  it('keeps no slab alive that a consumer never gives back once the consumer drops it', async () => {
    const slabs = new ReadSlabs(100, 20);
    let chunk: Buffer | undefined = readAndLend(slabs, 90);
    const first = new WeakRef(chunk.buffer);
    // A consumer that knows nothing of lending: it keeps nothing, gives nothing back.
    for (let read = 0; read < 50; read++) readAndLend(slabs, 90);
    chunk = undefined;
    // A WeakRef holds its target until the end of the job that created it.
    await new Promise((resolve) => setImmediate(resolve));
    collectGarbage();
    expect(first.deref()).toBeUndefined();
  });
});
