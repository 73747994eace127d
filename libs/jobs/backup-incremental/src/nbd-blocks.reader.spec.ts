import { randomBytes } from 'node:crypto';
import { NbdClient, NbdReadFailure, NbdServer, NBD_EIO } from '@haven/nbd';
import { BlockBufferPool, VHD_BLOCK_SIZE } from '@haven/vhd';
import { nbdBlocks } from './nbd-blocks.reader';

const MiB = 1024 * 1024;
// 6 blocks, the last one 4 KiB long
const disk = randomBytes(10 * MiB + 4096);

describe('nbdBlocks: CBT-changed blocks read over NBD', () => {
  let server: NbdServer;
  let client: NbdClient;
  let serving = 0;
  let mostServing = 0;
  let failAt: number | undefined;

  beforeEach(async () => {
    serving = 0;
    mostServing = 0;
    failAt = undefined;
    server = new NbdServer({
      openExport: () => ({
        size: disk.length,
        read: async (offset, length) => {
          serving++;
          mostServing = Math.max(mostServing, serving);
          await new Promise((resolve) => setImmediate(resolve));
          serving--;
          if (offset === failAt) throw new NbdReadFailure(NBD_EIO, 'bad sector');
          return Buffer.from(disk.subarray(offset, offset + length));
        },
      }),
    });
    const { port } = await server.listen(0, '127.0.0.1');
    client = await NbdClient.connect({ host: '127.0.0.1', port, exportName: '/disk', maxInFlight: 8 });
  });

  afterEach(async () => {
    client.destroy();
    await server.close();
  });

  it('yields the listed blocks in order with their content, the last one cut at the disk end', async () => {
    const buffers = new BlockBufferPool(VHD_BLOCK_SIZE, 8);
    const seen: number[] = [];
    for await (const block of nbdBlocks(client, [0, 2, 3, 5], disk.length, buffers, {
      ahead: 3,
      label: 'disk 0',
    })) {
      seen.push(block.index);
      const offset = block.index * VHD_BLOCK_SIZE;
      expect(block.data.equals(disk.subarray(offset, Math.min(offset + VHD_BLOCK_SIZE, disk.length)))).toBe(
        true,
      );
      block.release?.();
    }
    expect(seen).toEqual([0, 2, 3, 5]);
    expect(buffers.inUse).toBe(0);
  });

  it('keeps `ahead` reads in flight and reuses the released buffers instead of one per block', async () => {
    const buffers = new BlockBufferPool(VHD_BLOCK_SIZE, 8);
    const blocks = [0, 1, 2, 3, 4, 5];
    let count = 0;
    for (let round = 0; round < 4; round++) {
      for await (const block of nbdBlocks(client, blocks, disk.length, buffers, {
        ahead: 3,
        label: 'disk 0',
      })) {
        count++;
        block.release?.();
      }
    }
    expect(count).toBe(24);
    expect(mostServing).toBe(3);
    // `ahead` buffers in flight plus the one the consumer holds, whatever the number of blocks.
    expect(buffers.allocated).toBeLessThanOrEqual(4);
  });

  it("fails with the server's read error naming the offset", async () => {
    failAt = 3 * VHD_BLOCK_SIZE;
    const buffers = new BlockBufferPool(VHD_BLOCK_SIZE, 8);
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const block of nbdBlocks(client, [1, 3, 4], disk.length, buffers, {
          ahead: 2,
          label: 'disk 0',
        })) {
          seen.push(block.index);
          block.release?.();
        }
      })(),
    ).rejects.toMatchObject({
      code: 'NBD_READ_ERROR',
      errno: NBD_EIO,
      message: expect.stringContaining(`offset ${3 * VHD_BLOCK_SIZE}`),
    });
    expect(seen).toEqual([1]);
  });

  it('refuses an export whose size is not the disk size XAPI reports', async () => {
    const buffers = new BlockBufferPool(VHD_BLOCK_SIZE, 8);
    const reading = nbdBlocks(client, [0], disk.length + 512, buffers, {
      ahead: 2,
      label: 'disk 1 of VM "web"',
    });
    await expect(reading.next()).rejects.toMatchObject({
      code: 'DISK_MISMATCH',
      message: expect.stringContaining('disk 1 of VM "web"'),
    });
  });
});
