import { PassThrough } from 'node:stream';
import { SocketByteReader } from './socket-byte.reader';

const KiB = 1024;

describe('SocketByteReader', () => {
  it('reads exact lengths across chunk boundaries, straight into the given buffer', async () => {
    const socket = new PassThrough();
    const reader = new SocketByteReader(socket, () => new Error('ended'));
    socket.write(Buffer.from([1, 2, 3]));
    socket.write(Buffer.from([4, 5, 6, 7]));
    expect([...(await reader.read(2))]).toEqual([1, 2]);
    const target = Buffer.alloc(6, 0xff);
    const filled = reader.readInto(target.subarray(1, 5));
    socket.write(Buffer.from([8]));
    expect([...(await filled)]).toEqual([3, 4, 5, 6]);
    expect([...target]).toEqual([0xff, 3, 4, 5, 6, 0xff]);
    expect([...(await reader.read(2))]).toEqual([7, 8]);
  });

  it('pauses the socket past highWaterMark unread bytes and resumes as they are read', async () => {
    const socket = new PassThrough({ highWaterMark: 16 * KiB });
    const reader = new SocketByteReader(socket, () => new Error('ended'), 64 * KiB);
    let written = 0;
    // Write until the socket pushes back: the reader must not take everything in.
    while (socket.write(Buffer.alloc(8 * KiB)) && written < 10_000 * KiB) written += 8 * KiB;
    await new Promise((resolve) => setImmediate(resolve));
    expect(socket.isPaused()).toBe(true);
    expect(reader.bufferedBytes).toBeGreaterThanOrEqual(64 * KiB);
    expect(reader.bufferedBytes).toBeLessThan(64 * KiB + 8 * KiB + 1);
    await reader.read(reader.bufferedBytes);
    expect(socket.isPaused()).toBe(false);
  });

  it('fails a read the stream cannot complete with the error the owner makes of the end', async () => {
    const socket = new PassThrough();
    const reader = new SocketByteReader(
      socket,
      (cause) => new Error(`lost${cause ? `: ${cause.message}` : ''}`),
    );
    socket.write(Buffer.from([1]));
    const read = reader.read(4);
    socket.end();
    await expect(read).rejects.toThrow('lost');
    const broken = new PassThrough();
    const other = new SocketByteReader(broken, (cause) => new Error(`lost: ${cause?.message ?? ''}`));
    const pending = other.read(1);
    broken.destroy(new Error('reset by peer'));
    await expect(pending).rejects.toThrow('lost: reset by peer');
  });
});
