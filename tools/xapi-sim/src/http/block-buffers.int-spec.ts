import { createServer, get, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BLOCK_SIZE } from '../storage/block.constants';
import { BlockBufferPool } from '@haven/vhd';
import { responseWriter } from './block-buffers';

const BLOCKS = 48;

/** Serves BLOCKS blocks, block i filled with byte i, each read into a buffer from `buffers`. */
function serveBlocks(buffers: BlockBufferPool): Server {
  return createServer((_request, response) => {
    function* blocks(): Generator<Buffer> {
      for (let index = 0; index < BLOCKS; index++) {
        const buffer = buffers.acquire();
        buffer.fill(index);
        yield index === BLOCKS - 1 ? buffer.subarray(0, 1000) : buffer;
        yield Buffer.from([0xff]); // not a block buffer: ignored when handed back
      }
    }
    response.writeHead(200, { 'content-length': (BLOCKS - 1) * BLOCK_SIZE + 1000 + BLOCKS });
    void pipeline(
      Readable.from(blocks()),
      responseWriter(response, (chunk) => {
        if (buffers.lends(chunk)) buffers.release(chunk);
      }),
    );
  });
}

describe('export block buffers handed back by the response writer', () => {
  it('are reused once the socket took them, and every byte arrives as it was', async () => {
    const buffers = new BlockBufferPool(BLOCK_SIZE, 4);
    const server = serveBlocks(buffers);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const received = await new Promise<Buffer[]>((resolve, reject) => {
        get({ host: '127.0.0.1', port, path: '/' }, (response) => {
          const chunks: Buffer[] = [];
          // A slow reader: the server's writes wait on the socket, as an export's do.
          response.on('data', (chunk: Buffer) => {
            chunks.push(chunk);
            response.pause();
            setTimeout(() => response.resume(), 1);
          });
          response.on('end', () => resolve(chunks));
          response.on('error', reject);
        }).on('error', reject);
      });
      const body = Buffer.concat(received);
      let offset = 0;
      for (let index = 0; index < BLOCKS; index++) {
        const length = index === BLOCKS - 1 ? 1000 : BLOCK_SIZE;
        const block = body.subarray(offset, offset + length);
        expect(block.length).toBe(length);
        expect(block.every((byte) => byte === index)).toBe(true);
        expect(body[offset + length]).toBe(0xff);
        offset += length + 1;
      }
      expect(offset).toBe(body.length);
      // Handed back after each write: a few buffers in all, not one per block.
      expect(buffers.allocated).toBeLessThanOrEqual(4);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
