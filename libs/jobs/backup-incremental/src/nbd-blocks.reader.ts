import type { DiskBlock } from '@haven/repository';
import { VHD_BLOCK_SIZE, type BlockBufferSource } from '@haven/vhd';
import { BackupJobError } from './backup-incremental.errors';

/** A disk readable at any offset, reads pipelined (an NBD connection: `XapiPool.connectNbd`). */
export interface RandomAccessDisk {
  readonly size: number;
  read(offset: number, length: number, target: Buffer): Promise<Buffer>;
}

interface BlockRead {
  index: number;
  buffer: Buffer;
  read: Promise<Buffer>;
}

/**
 * The listed 2 MiB blocks (increasing) of a disk read over NBD, yielded in order. Up to `ahead`
 * reads are in flight on the one connection (pipelined: the host reads block N+1 while block N
 * crosses the network), each into a buffer of `buffers` that goes back to it when the writer
 * releases the block, so the disk costs `ahead` + what the writers hold, never a buffer per block.
 * The disk's last block is cut at its end.
 */
export async function* nbdBlocks(
  client: RandomAccessDisk,
  blocks: readonly number[],
  virtualSize: number,
  buffers: BlockBufferSource,
  options: { ahead: number; label: string },
): AsyncGenerator<DiskBlock, void, undefined> {
  if (client.size !== virtualSize) {
    throw new BackupJobError(
      'DISK_MISMATCH',
      `the NBD export of ${options.label} is ${client.size} bytes but XAPI reports ${virtualSize}; retry the backup`,
    );
  }
  const queue: BlockRead[] = [];
  let next = 0;
  const issue = (): void => {
    while (queue.length < options.ahead && next < blocks.length) {
      const index = blocks[next++] ?? 0;
      const length = Math.min(VHD_BLOCK_SIZE, virtualSize - index * VHD_BLOCK_SIZE);
      const buffer = buffers.acquire();
      const read = client.read(index * VHD_BLOCK_SIZE, length, buffer);
      // Awaited in order below; a failure of a later read must not go unhandled meanwhile.
      read.catch(() => undefined);
      queue.push({ index, buffer, read });
    }
  };
  issue();
  for (let head = queue.shift(); head !== undefined; head = queue.shift()) {
    const data = await head.read;
    issue();
    const buffer = head.buffer;
    let released = false;
    yield {
      index: head.index,
      data,
      release: () => {
        if (released) return;
        released = true;
        buffers.release(buffer);
      },
    };
  }
  // Reads still queued when the consumer stops or a read fails are cancelled with the connection
  // (the caller closes it); their buffers are left to the garbage collector, the socket may still
  // be writing into them.
}
