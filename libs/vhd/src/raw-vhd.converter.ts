import { Readable, addAbortSignal } from 'node:stream';
import { VHD_BLOCK_SIZE, VHD_SECTOR_SIZE } from './vhd.constants';
import { VhdFormatError } from './vhd-format.error';
import type { RangedSource } from './ranged.source';
import type { VhdDisk } from './vhd-disk.contract';
import { createVhdStream, vhdBlockCount } from './vhd-stream.writer';
import { parseVhdStream } from './vhd-stream.reader';

const ZERO_BLOCK = Buffer.alloc(VHD_BLOCK_SIZE);

export function isZeroBlock(data: Buffer): boolean {
  return data.equals(data.length === VHD_BLOCK_SIZE ? ZERO_BLOCK : ZERO_BLOCK.subarray(0, data.length));
}

function withSignal(stream: Readable, signal: AbortSignal | undefined): Readable {
  if (signal !== undefined) addAbortSignal(signal, stream);
  return stream;
}

/** The raw content of a VHD or chain as a stream of exactly virtualSize bytes, block by block. */
export function createRawStream(disk: VhdDisk, options: { signal?: AbortSignal } = {}): Readable {
  async function* generate(): AsyncGenerator<Buffer> {
    for (let index = 0; index < disk.blockCount; index++) {
      const data = await disk.readBlockData(index);
      const end = Math.min(VHD_BLOCK_SIZE, disk.virtualSize - index * VHD_BLOCK_SIZE);
      yield end === VHD_BLOCK_SIZE ? data : data.subarray(0, end);
    }
  }
  return withSignal(Readable.from(generate(), { objectMode: false }), options.signal);
}

/**
 * A VHD stream (as XAPI exports it) turned into the raw disk. Blocks must arrive in ascending index
 * order, which is what XAPI and qemu write; holes become zeros. Differencing VHDs are refused: alone
 * they do not describe a whole disk.
 */
export function createRawStreamFromVhdStream(
  source: Readable | AsyncIterable<Buffer>,
  options: { signal?: AbortSignal } = {},
): Readable {
  async function* generate(): AsyncGenerator<Buffer> {
    let virtualSize = 0;
    let next = 0;
    const emitZerosUntil = function* (index: number): Generator<Buffer> {
      for (; next < index; next++) {
        const end = Math.min(VHD_BLOCK_SIZE, virtualSize - next * VHD_BLOCK_SIZE);
        yield end === VHD_BLOCK_SIZE ? ZERO_BLOCK : ZERO_BLOCK.subarray(0, end);
      }
    };
    for await (const item of parseVhdStream(source)) {
      if (item.type === 'metadata') {
        if (item.footer.diskType === 'differencing') {
          throw new VhdFormatError(
            'VHD_DISK_TYPE',
            'a differencing VHD alone is not a whole disk; read it with its parents through VhdChain',
            60,
          );
        }
        virtualSize = item.footer.currentSize;
        continue;
      }
      if (item.index < next) {
        throw new VhdFormatError(
          'VHD_BLOCK_ORDER',
          `block ${item.index} comes after block ${next - 1} in the stream; converting a stream to raw needs blocks in ascending index order`,
        );
      }
      yield* emitZerosUntil(item.index);
      const end = Math.min(VHD_BLOCK_SIZE, virtualSize - item.index * VHD_BLOCK_SIZE);
      yield end === VHD_BLOCK_SIZE ? item.data : item.data.subarray(0, end);
      next = item.index + 1;
    }
    yield* emitZerosUntil(vhdBlockCount(virtualSize));
  }
  return withSignal(Readable.from(generate(), { objectMode: false }), options.signal);
}

async function readRawBlock(source: RangedSource, index: number, virtualSize: number): Promise<Buffer> {
  const offset = index * VHD_BLOCK_SIZE;
  const wanted = Math.min(VHD_BLOCK_SIZE, virtualSize - offset);
  const available = Math.max(0, Math.min(wanted, source.size - offset));
  const data = available > 0 ? await source.read(offset, available) : Buffer.alloc(0);
  if (data.length < available) {
    throw new VhdFormatError(
      'VHD_TRUNCATED',
      `the raw source returned ${data.length} of ${available} bytes at ${offset}; it changed size while being read`,
      offset,
    );
  }
  if (data.length === wanted) return data;
  // The raw image ends inside this sector or block: pad with zeros up to the VHD's size.
  const padded = Buffer.alloc(wanted);
  data.copy(padded);
  return padded;
}

export interface RawToVhdOptions {
  /** Defaults to the source size rounded up to a sector. */
  virtualSize?: number;
  /** Blocks known to hold data; when absent every block is read once to skip all-zero ones. */
  allocatedBlocks?: readonly number[];
  uuid?: string;
  timestamp?: Date;
  signal?: AbortSignal;
}

/**
 * A raw disk (any ranged source) as a dynamic VHD stream. All-zero blocks are left out; finding them
 * costs one read pass before streaming unless the caller already knows which blocks are allocated.
 */
export async function createVhdStreamFromRaw(
  source: RangedSource,
  options: RawToVhdOptions = {},
): Promise<Readable> {
  const virtualSize = options.virtualSize ?? Math.ceil(source.size / VHD_SECTOR_SIZE) * VHD_SECTOR_SIZE;
  let allocatedBlocks = options.allocatedBlocks;
  if (allocatedBlocks === undefined) {
    const found: number[] = [];
    const count = vhdBlockCount(virtualSize);
    for (let index = 0; index < count; index++) {
      options.signal?.throwIfAborted();
      if (index * VHD_BLOCK_SIZE >= source.size) break;
      if (!isZeroBlock(await readRawBlock(source, index, virtualSize))) found.push(index);
    }
    allocatedBlocks = found;
  }
  return createVhdStream({
    virtualSize,
    allocatedBlocks,
    type: 'dynamic',
    readBlock: (index) => readRawBlock(source, index, virtualSize),
    ...(options.uuid === undefined ? {} : { uuid: options.uuid }),
    ...(options.timestamp === undefined ? {} : { timestamp: options.timestamp }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
}
