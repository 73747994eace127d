import { fieldText } from '../rpc/xapi-value';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BlockBufferPool, createVhdStream, vhdStreamLength } from '@haven/vhd';
import type { SimulatedPool } from '../model/simulated-pool';
import { BLOCK_SIZE, blockCount } from '../storage/block.constants';
import { SECTOR_SIZE, SECTORS_PER_BLOCK } from '../storage/slot.lineage';
import type { VirtualDisk } from '../storage/virtual-disk';
import { XapiFailure } from '../xapi.failure';
import type { HttpTransfer } from './http-transfer';
import { responseWriter } from './block-buffers';
import { createTransferFaults } from './transfer-faults';

const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE);
/** Block buffers an export keeps for reuse (two read ahead, the ones the socket still holds). */
const EXPORT_BUFFERS_KEPT = 8;

/** Blocks of `disk` that differ from `base`: copy-on-write makes "changed" a comparison of slots. */
export function changedBlocks(disk: VirtualDisk, base: VirtualDisk): number[] {
  const changed = new Set<number>();
  const count = disk.blockCount;
  for (const [block, slot] of disk.blockMap)
    if (block < count && base.slotOf(block) !== slot) changed.add(block);
  // Blocks zeroed since the base must be sent as zeros, or the parent's data would show through.
  for (const block of base.blockMap.keys())
    if (block < count && !disk.blockMap.has(block)) changed.add(block);
  return [...changed].sort((a, b) => a - b);
}

/**
 * Reads blocks ahead of the consumer (two in flight) so that the file read of block N+1 overlaps
 * the socket write of block N, into buffers the export's writer hands back once sent.
 */
function blockReader(
  disk: VirtualDisk,
  blocks: readonly number[],
  buffers: BlockBufferPool,
): (index: number) => Promise<Buffer> {
  const pending = new Map<number, Promise<Buffer>>();
  let next = 0;
  const load = (index: number): Promise<Buffer> => {
    const buffer = buffers.acquire();
    return disk.readBlockInto(index, buffer).then(() => buffer);
  };
  return (index) => {
    const ready = pending.get(index) ?? load(index);
    pending.delete(index);
    while (next < blocks.length && (blocks[next] ?? -1) <= index) next++;
    const ahead = blocks.at(next);
    if (ahead !== undefined && !pending.has(ahead)) pending.set(ahead, load(ahead));
    return ready;
  };
}

function rawStream(disk: VirtualDisk, signal: AbortSignal, buffers: BlockBufferPool): Readable {
  const size = disk.virtualSize;
  const read = blockReader(disk, disk.allocatedBlocks(), buffers);
  async function* generate(): AsyncGenerator<Buffer> {
    for (let block = 0; block * BLOCK_SIZE < size; block++) {
      if (signal.aborted) return;
      const length = Math.min(BLOCK_SIZE, size - block * BLOCK_SIZE);
      const data = disk.slotOf(block) === undefined ? ZERO_BLOCK : await read(block);
      yield data.subarray(0, length);
    }
  }
  return Readable.from(generate(), { objectMode: false, highWaterMark: BLOCK_SIZE });
}

/**
 * `blocks=0-3,7,10-12`: 2 MiB block indexes (single or `first-last` ranges), increasing, without
 * overlap. A simulator-only fallback: real XAPI has no such query and serves these reads over NBD
 * (`VDI.get_nbd_info`, which the simulator also offers); Haven uses it when no NBD is offered.
 */
export function parseBlockList(text: string, count: number): number[] {
  const blocks: number[] = [];
  const fail = (why: string): never => {
    throw new XapiFailure('FIELD_TYPE_ERROR', [`blocks=${text.slice(0, 200)}: ${why}`]);
  };
  if (text === '') return blocks;
  for (const part of text.split(',')) {
    if (!/^\d{1,10}(?:-\d{1,10})?$/.test(part))
      return fail(`"${part.slice(0, 40)}" is not a block index or a range first-last`);
    const [firstText = '', lastText = firstText] = part.split('-');
    const first = Number(firstText);
    const last = Number(lastText);
    if (last < first) return fail(`range ${part} ends before it starts`);
    if (last >= count) return fail(`block ${last} is past the disk's last block ${count - 1}`);
    if (blocks.length > 0 && first <= (blocks.at(-1) ?? -1))
      return fail('blocks must increase without overlap');
    for (let block = first; block <= last; block++) blocks.push(block);
  }
  return blocks;
}

/** The listed blocks of the disk, concatenated (the disk's last block cut to its end). */
function rawBlocksStream(
  disk: VirtualDisk,
  blocks: readonly number[],
  signal: AbortSignal,
  buffers: BlockBufferPool,
): { stream: Readable; length: number } {
  const size = disk.virtualSize;
  const lengthOf = (block: number): number => Math.min(BLOCK_SIZE, size - block * BLOCK_SIZE);
  const allocated = blocks.filter((block) => disk.slotOf(block) !== undefined);
  const read = blockReader(disk, allocated, buffers);
  async function* generate(): AsyncGenerator<Buffer> {
    for (const block of blocks) {
      if (signal.aborted) return;
      const data = disk.slotOf(block) === undefined ? ZERO_BLOCK : await read(block);
      yield data.subarray(0, lengthOf(block));
    }
  }
  return {
    stream: Readable.from(generate(), { objectMode: false, highWaterMark: BLOCK_SIZE }),
    length: blocks.reduce((sum, block) => sum + lengthOf(block), 0),
  };
}

export interface VdiExport {
  stream: Readable;
  /** Exact byte length of the stream. */
  length: number;
  /** Blocks sent (VHD) or read (raw). */
  blocks: number;
  /** Blocks of a differencing VHD sent with a partial sector bitmap. */
  partialBlocks: number;
  /**
   * Hands back a chunk of `stream` once nothing reads it any more (its socket write completed): its
   * memory is reused for a later block. Optional for a consumer; never call it earlier.
   */
  recycle: (chunk: Buffer) => void;
}

/**
 * What a block's sectors absent from its bitmap hold in an export: not meaningful (a VHD reader
 * takes them from the parent). The simulator fills them with this byte, so that a backup trusting
 * them restores a corrupted disk.
 */
export const ABSENT_SECTOR_FILL = 0xa5;

/** Overwrites the sectors of `data` whose bit in `bitmap` is clear with ABSENT_SECTOR_FILL. */
function fillAbsentSectors(data: Buffer, bitmap: Buffer): void {
  for (let sector = 0; sector < SECTORS_PER_BLOCK; sector++) {
    if (((bitmap[sector >> 3] ?? 0) & (0x80 >> (sector & 7))) === 0)
      data.fill(ABSENT_SECTOR_FILL, sector * SECTOR_SIZE, (sector + 1) * SECTOR_SIZE);
  }
}

/**
 * The body of an export: the raw disk, a dynamic VHD, or with `base` a differencing VHD holding the
 * blocks whose content may differ from the base's (copy-on-write makes that a slot comparison).
 * As a VHD chain would, a differencing export marks in a block's sector bitmap only the sectors
 * written since the base when the block was partly written: the others are left to the parent.
 */
export function createVdiExportStream(
  pool: SimulatedPool,
  vdi: string,
  options: { format: 'raw' | 'vhd'; base?: string; blocks?: string; signal?: AbortSignal },
): VdiExport {
  const record = pool.store.get('VDI', vdi);
  if (record['type'] === 'cbt_metadata')
    throw new XapiFailure('VDI_INCOMPATIBLE_TYPE', [vdi, 'cbt_metadata']);
  const disk = pool.disks.get(vdi);
  const signal = options.signal ?? new AbortController().signal;
  // Block buffers reused once the socket took them: a fresh 2 MiB buffer per block made V8
  // collect often, on cores the backup under test shares. Chunks not lent (headers, bitmaps,
  // shared zeros) are left alone.
  const buffers = new BlockBufferPool(BLOCK_SIZE, EXPORT_BUFFERS_KEPT);
  const recycle = (chunk: Buffer): void => {
    if (buffers.lends(chunk)) buffers.release(chunk);
  };
  if (options.format === 'raw') {
    if (options.base !== undefined)
      throw new XapiFailure('FIELD_TYPE_ERROR', ['base (raw exports are always full)']);
    if (options.blocks !== undefined) {
      const listed = parseBlockList(options.blocks, blockCount(disk.virtualSize));
      return {
        ...rawBlocksStream(disk, listed, signal, buffers),
        blocks: listed.length,
        partialBlocks: 0,
        recycle,
      };
    }
    return {
      stream: rawStream(disk, signal, buffers),
      length: disk.virtualSize,
      blocks: disk.blockCount,
      partialBlocks: 0,
      recycle,
    };
  }
  if (options.blocks !== undefined)
    throw new XapiFailure('FIELD_TYPE_ERROR', ['blocks (only raw exports read a block list)']);
  let base: { disk: VirtualDisk; uuid: string } | undefined;
  if (options.base !== undefined) {
    const baseRecord = pool.store.get('VDI', options.base);
    if (baseRecord['type'] === 'cbt_metadata')
      throw new XapiFailure('VDI_INCOMPATIBLE_TYPE', [options.base, 'cbt_metadata']);
    base = { disk: pool.disks.get(options.base), uuid: fieldText(baseRecord, 'uuid') };
  }
  const allocatedBlocks = base === undefined ? disk.allocatedBlocks() : changedBlocks(disk, base.disk);
  // Decided now, with the block list: the sectors of each partly written block.
  const partial = new Map<number, Buffer>();
  if (base !== undefined) {
    for (const block of allocatedBlocks) {
      const bitmap = disk.sectorsWrittenSince(base.disk, block);
      if (bitmap !== undefined) partial.set(block, bitmap);
    }
  }
  const read = blockReader(disk, allocatedBlocks, buffers);
  const stream = createVhdStream({
    virtualSize: disk.virtualSize,
    allocatedBlocks,
    readBlock: async (index) => {
      const data = await read(index);
      const bitmap = partial.get(index);
      if (bitmap !== undefined) fillAbsentSectors(data, bitmap);
      return data;
    },
    sectorBitmap: (index) => partial.get(index),
    type: base === undefined ? 'dynamic' : 'differencing',
    uuid: fieldText(record, 'uuid'),
    ...(base === undefined ? {} : { parentUuid: base.uuid, parentUnicodeName: `${base.uuid}.vhd` }),
    signal,
  });
  return {
    stream,
    length: vhdStreamLength({ virtualSize: disk.virtualSize, allocatedBlocks }),
    blocks: allocatedBlocks.length,
    partialBlocks: partial.size,
    recycle,
  };
}

/**
 * GET /export_raw_vdi/?vdi=&format=raw|vhd[&base=][&blocks=]: a disk, its delta against `base` as
 * a differencing VHD, or (raw) only the listed 2 MiB blocks.
 */
export async function exportRawVdi(pool: SimulatedPool, transfer: HttpTransfer): Promise<void> {
  transfer.begin();
  const vdiParam = transfer.query('vdi');
  if (vdiParam === undefined) throw new XapiFailure('FIELD_TYPE_ERROR', ['vdi']);
  const vdi = pool.store.resolve('VDI', vdiParam);
  const format = transfer.query('format') ?? 'raw';
  if (format !== 'raw' && format !== 'vhd') throw new XapiFailure('FIELD_TYPE_ERROR', [`format=${format}`]);
  const baseParam = transfer.query('base');
  const blocksParam = transfer.query('blocks');
  const base = baseParam === undefined ? undefined : pool.store.resolve('VDI', baseParam);
  const exported = createVdiExportStream(pool, vdi, {
    format,
    ...(base === undefined ? {} : { base }),
    ...(blocksParam === undefined ? {} : { blocks: blocksParam }),
    signal: transfer.signal,
  });
  const { stream: body, length } = exported;
  const record = pool.store.get('VDI', vdi);
  const snapshotOf = fieldText(record, 'snapshot_of');
  pool.exports.record({
    vdi,
    uuid: fieldText(record, 'uuid'),
    snapshotOf:
      record['is_a_snapshot'] === true && pool.store.find(snapshotOf) !== undefined
        ? fieldText(pool.store.get('VDI', snapshotOf), 'uuid')
        : null,
    format,
    base: base === undefined ? null : fieldText(pool.store.get('VDI', base), 'uuid'),
    blocks: exported.blocks,
    partialBlocks: exported.partialBlocks,
  });
  let sent = 0;
  body.on('data', (chunk: Buffer) => {
    sent += chunk.length;
    transfer.progress(sent, length);
  });
  const faults: Transform | undefined = createTransferFaults(pool.faults, 'export');
  transfer.response.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': length,
  });
  // Through injected faults chunks are cut and copied: no telling when a block's memory is free.
  if (faults === undefined) {
    const sink = responseWriter(transfer.response, exported.recycle);
    await pipeline(body, sink, { signal: transfer.signal });
  } else {
    await pipeline(body, faults, transfer.response, { signal: transfer.signal });
  }
  transfer.succeed();
}
