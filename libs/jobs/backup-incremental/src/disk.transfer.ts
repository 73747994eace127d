import {
  CHUNK_OBJECT_HEADROOM,
  type DiskBlock,
  type DiskReader,
  type RestorePointDisk,
  type RestorePointWriter,
} from '@haven/repository';
import { allocatePageAligned } from '@haven/remote-sdk';
import { BlockBufferPool, openVhdStream, VHD_BLOCK_SIZE, type VhdStreamBlock } from '@haven/vhd';
import type { XapiPool } from '@haven/xapi';
import { BackupJobError } from './backup-incremental.errors';
import { BlockFanout } from './block.fanout';
import type { DiskPlan } from './disk.plan';
import { nbdBlocks } from './nbd-blocks.reader';
import { rawBlocks } from './raw-blocks.reader';
import { wholeBlocks } from './whole-block.merger';

/**
 * Export block buffers kept for reuse: the fan-out holds two blocks, each writer up to its upload
 * concurrency (4 by default) until it has sealed them.
 */
const EXPORT_BUFFERS_KEPT = 8;

/**
 * NBD reads of CBT-changed blocks in flight on the connection: enough to keep the host reading
 * while a block crosses the network, few enough that the disk holds a handful of 2 MiB buffers.
 */
const NBD_READS_AHEAD = 4;

/**
 * How the disk's data was read: CBT-changed blocks over NBD (`VDI.get_nbd_info`, as real XAPI
 * offers them), through the simulator's `export_raw_vdi?blocks=` query when the pool offers no NBD,
 * as a VHD export, or not at all (no block changed).
 */
export type DiskReadPath = 'nbd' | 'raw-blocks-export' | 'vhd-export' | 'none';

/** One remote's writer for this disk, and its copy of the base disk when the plan is a delta. */
export interface DiskDestination {
  writer: RestorePointWriter;
  base?: DiskReader;
}

export interface DiskTransferResult {
  /** Bytes read from the pool (2 MiB per exported block, the short last block as it is). */
  bytesRead: number;
  /** What each remote's writer recorded (chunks uploaded, reused…), in destination order. */
  stored: RestorePointDisk[];
  readPath: DiskReadPath;
}

/**
 * When a disk may start writing: after `previous` (the disk before it has started), so restore
 * points list disks in plan order however the exports race; `started` is called once it has.
 */
export interface WriteTurn {
  previous: Promise<void>;
  started: () => void;
}

/**
 * Reads one disk of the snapshot once (a whole or base-relative VHD export, or only the blocks CBT
 * reports changed: over NBD when the pool offers it, else through the `blocks=` export) and writes it to every remote's restore point. `onProgress` gets how far into
 * the disk the read is (bytes). Stops every writer before it returns or throws.
 */
export async function transferDisk(
  pool: XapiPool,
  plan: DiskPlan,
  destinations: readonly DiskDestination[],
  label: string,
  onProgress: (furthest: number) => void,
  signal: AbortSignal,
  turn: WriteTurn,
): Promise<DiskTransferResult> {
  const size = plan.disk.virtualSize;
  let bytesRead = 0;
  let furthest = 0;
  const seen = (index: number, length: number): void => {
    bytesRead += length;
    furthest = Math.max(furthest, Math.min((index + 1) * VHD_BLOCK_SIZE, size));
    onProgress(furthest);
  };
  const meta = { key: plan.key, virtualSize: size, uuid: plan.disk.vdiUuid, name: plan.disk.name };

  let write: (destination: DiskDestination, index: number) => Promise<RestorePointDisk>;
  let close: () => Promise<void>;
  let readPath: DiskReadPath;
  let succeeded = false;
  if (plan.transport === 'cbt') {
    const blocks = plan.changedBlocks ?? [];
    const nbd =
      blocks.length === 0
        ? undefined
        : await pool.connectNbd(plan.disk.vdiRef, { signal, maxInFlight: NBD_READS_AHEAD });
    let source: AsyncGenerator<DiskBlock, void, undefined>;
    if (blocks.length === 0) {
      readPath = 'none';
      source = emptyBlocks();
    } else if (nbd !== undefined) {
      readPath = 'nbd';
      // Blocks go back to the pool once every remote's writer has released them (BlockFanout).
      const blockBuffers = new BlockBufferPool(VHD_BLOCK_SIZE, EXPORT_BUFFERS_KEPT);
      source = nbdBlocks(nbd, blocks, size, blockBuffers, { ahead: NBD_READS_AHEAD, label });
    } else {
      readPath = 'raw-blocks-export';
      source = rawBlocks(await pool.exportRaw(plan.disk.vdiRef, { blocks, signal }), blocks, size, label);
    }
    async function* counted(): AsyncGenerator<DiskBlock, void, undefined> {
      for await (const block of source) {
        seen(block.index, block.data.length);
        yield block;
      }
    }
    const fanout = new BlockFanout(counted(), destinations.length);
    write = (destination, index) =>
      destination.writer.writeDisk(
        meta,
        fanout.consumer(index),
        destination.base !== undefined ? { base: destination.base } : {},
      );
    close = async () => {
      await fanout.close();
      // A soft disconnect after a complete read; a failed one drops the connection and its reads.
      if (succeeded) await nbd?.close();
      else nbd?.destroy(new Error(`the backup of ${label} stopped`));
    };
  } else {
    readPath = 'vhd-export';
    const exported = await pool.exportVhd(plan.disk.vdiRef, {
      ...(plan.baseDisk !== undefined ? { baseVdiRef: plan.baseDisk.vdiRef } : {}),
      signal,
    });
    // Block data is read into reused buffers, each given back once every remote's writer has
    // released it (BlockFanout): no fresh 2 MiB allocation per block. Each has room for a chunk
    // object's header before it, in page-aligned memory: a single remote's writer seals the chunk
    // around the block and the remote writes it around the page cache, with no copy of the block.
    const blockBuffers = new BlockBufferPool(VHD_BLOCK_SIZE, EXPORT_BUFFERS_KEPT, {
      headroom: CHUNK_OBJECT_HEADROOM,
      allocate: allocatePageAligned,
    });
    const { metadata, blocks } = await openVhdStream(exported, { blockBuffers });
    if (metadata.footer.currentSize !== size) {
      await blocks.return();
      throw new BackupJobError(
        'DISK_MISMATCH',
        `the export of ${label} is ${metadata.footer.currentSize} bytes but XAPI reports ${size}; retry the backup`,
      );
    }
    async function* counted() {
      for await (const block of blocks) {
        seen(block.index, VHD_BLOCK_SIZE);
        yield exclusiveFrame(block, destinations.length);
      }
    }
    const fanout = new BlockFanout(counted(), destinations.length);
    write = (destination, index) =>
      destination.writer.writeDisk(
        meta,
        wholeBlocks(fanout.consumer(index), size, destination.base),
        destination.base !== undefined ? { base: destination.base } : {},
      );
    close = () => fanout.close();
  }
  try {
    await turn.previous;
    signal.throwIfAborted();
    // Settled, not raced: on a failure every writer has stopped before the caller aborts them.
    const writes = destinations.map((destination, index) => write(destination, index));
    turn.started();
    const settled = await Promise.allSettled(writes);
    const stored: RestorePointDisk[] = [];
    for (const outcome of settled) {
      if (outcome.status === 'rejected') throw outcome.reason;
      stored.push(outcome.value);
    }
    onProgress(size);
    succeeded = true;
    return { bytesRead, stored, readPath };
  } finally {
    await close();
  }
}

async function* emptyBlocks(): AsyncGenerator<DiskBlock, void, undefined> {}

/**
 * A block's frame goes on only to a single writer, which may write in it (DiskBlock.frame); blocks
 * shared by several remotes' writers are only read.
 */
export function exclusiveFrame(block: VhdStreamBlock, writers: number): VhdStreamBlock {
  if (writers === 1 || block.frame === undefined) return block;
  const { frame: _shared, ...readOnly } = block;
  return readOnly;
}
