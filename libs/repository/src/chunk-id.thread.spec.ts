import { createHmac, hash, randomBytes } from 'node:crypto';
import { CHUNK_ID_THREAD_ENV, ChunkIdThread, chunkIdThread } from './chunk-id.thread';

/** `bytes` in shared memory, at `offset` into a larger shared buffer (a view, as a pool lends). */
function sharedBlock(bytes: Buffer, offset = 0): Buffer {
  const block = Buffer.from(new SharedArrayBuffer(offset + bytes.length + 7), offset, bytes.length);
  bytes.copy(block);
  return block;
}

describe('ChunkIdThread', () => {
  const thread = new ChunkIdThread();
  afterAll(() => thread.stop());

  it('names a block in shared memory as SHA-256 does here, reading only the view', async () => {
    const bytes = randomBytes(2 * 1024 * 1024 - 4096);
    const id = await thread.idOf(sharedBlock(bytes, 4099));
    expect(id.equals(hash('sha256', bytes, 'buffer'))).toBe(true);
    expect(id).toHaveLength(32);
  });

  it('names with the repository key as HMAC-SHA-256 does here', async () => {
    const bytes = randomBytes(65_536);
    const key = randomBytes(32);
    const id = await thread.idOf(sharedBlock(bytes, 13), key);
    expect(id.equals(createHmac('sha256', key).update(bytes).digest())).toBe(true);
  });

  it('answers each of many requests in flight with its own block’s id', async () => {
    const blocks = Array.from({ length: 40 }, (_, i) => randomBytes(1000 + i * 97));
    const ids = await Promise.all(blocks.map((bytes) => thread.idOf(sharedBlock(bytes, 3))));
    ids.forEach((id, i) => expect(id.equals(hash('sha256', blocks[i] as Buffer, 'buffer'))).toBe(true));
  });

  it('refuses a block that is not in shared memory (the thread could not read it in place)', async () => {
    expect(ChunkIdThread.reads(Buffer.alloc(10))).toBe(false);
    await expect(thread.idOf(Buffer.alloc(10))).rejects.toThrow(/shared memory/);
  });

  it('fails what waits when stopped, and starts again at the next request', async () => {
    const other = new ChunkIdThread();
    const waiting = other.idOf(sharedBlock(randomBytes(8 * 1024 * 1024)));
    await other.stop();
    await expect(waiting).rejects.toThrow(/stopped/);
    const bytes = randomBytes(100);
    expect((await other.idOf(sharedBlock(bytes))).equals(hash('sha256', bytes, 'buffer'))).toBe(true);
    await other.stop();
  });
});

describe('chunkIdThread (the process’s)', () => {
  it('is off when HAVEN_CHUNK_ID_THREAD=off, on when on, and refuses other values naming the variable', () => {
    expect(chunkIdThread({ [CHUNK_ID_THREAD_ENV]: 'off' })).toBeUndefined();
    const on = chunkIdThread({ [CHUNK_ID_THREAD_ENV]: 'on' });
    expect(on).toBeInstanceOf(ChunkIdThread);
    expect(chunkIdThread({ [CHUNK_ID_THREAD_ENV]: 'on' })).toBe(on);
    expect(() => chunkIdThread({ [CHUNK_ID_THREAD_ENV]: 'yes' })).toThrow(
      /HAVEN_CHUNK_ID_THREAD must be "on" or "off", not "yes"/,
    );
  });
});
