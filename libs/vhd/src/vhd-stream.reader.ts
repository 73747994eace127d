import type { Readable } from 'node:stream';
import { VHD_BLOCK_SIZE, VHD_FOOTER_SIZE, VHD_HEADER_SIZE, VHD_SECTOR_BITMAP_SIZE } from './vhd.constants';
import { ByteStreamCursor } from './byte-stream.cursor';
import { decodeVhdFooter, type VhdFooter } from './vhd-footer.codec';
import { decodeParentLocatorData, decodeVhdHeader, type VhdHeader } from './vhd-header.codec';
import { checkVhdLayout, checkVhdTableDeclaration, decodeBat, vhdBatBytes } from './vhd-layout.check';
import { VhdFormatError } from './vhd-format.error';
import type { BlockBufferSource } from './block-buffer.pool';

/** Locator texts longer than this are not paths; they are skipped rather than buffered. */
const MAX_LOCATOR_TEXT = 64 * 1024;

export interface VhdStreamMetadata {
  type: 'metadata';
  footer: VhdFooter;
  header: VhdHeader;
  /** Raw BAT entries (sector offsets, 0xFFFFFFFF when unallocated). */
  bat: Uint32Array;
  blockCount: number;
  allocatedBlocks: readonly number[];
  /** Parent locator paths that precede the first block in the stream. */
  parentLocatorPaths: { platform: string; path: string }[];
}

export interface VhdStreamBlock {
  type: 'block';
  index: number;
  /** 512-byte sector bitmap (bit set = sector present; most significant bit is the first sector). */
  bitmap: Buffer;
  /** 2 MiB of data. */
  data: Buffer;
  /**
   * Present when the reader was given block buffers: gives `data` back for the reader to fill
   * again. Call it once, when nothing reads `data` any more; a block never released is left to
   * the garbage collector.
   */
  release?: () => void;
  /**
   * The writable memory `data` sits at the end of, when the block buffers leave room before their
   * data (BlockBufferSource.frameOf): whoever alone holds the block may write in front of the data.
   */
  frame?: Buffer;
}

export interface VhdStreamReadOptions {
  /**
   * Buffers of VHD_BLOCK_SIZE bytes to read block data into (each block then has `release`).
   * Without, each block's data is a fresh buffer (or a view of the source's chunk).
   */
  blockBuffers?: BlockBufferSource;
}

export type VhdStreamItem = VhdStreamMetadata | VhdStreamBlock;

type ByteSource = Readable | AsyncIterable<Buffer | Uint8Array | string>;

async function readExact(cursor: ByteStreamCursor, length: number, what: string): Promise<Buffer> {
  const at = cursor.position;
  const buffer = await cursor.read(length);
  if (buffer.length < length) {
    throw new VhdFormatError(
      'VHD_TRUNCATED',
      `VHD stream ended inside ${what}: got ${buffer.length} of ${length} bytes; the export was cut short`,
      at + buffer.length,
    );
  }
  return buffer;
}

/** Block data read into a buffer of `buffers`, with the `release` that gives it back once. */
async function readBlockInto(
  cursor: ByteStreamCursor,
  buffers: BlockBufferSource,
  what: string,
): Promise<{ data: Buffer; release: () => void; frame?: Buffer }> {
  const data = buffers.acquire();
  if (data.length !== VHD_BLOCK_SIZE) {
    buffers.release(data);
    throw new RangeError(`block buffers must be ${VHD_BLOCK_SIZE} bytes, got ${data.length}`);
  }
  const at = cursor.position;
  const got = await cursor.readInto(data);
  if (got < VHD_BLOCK_SIZE) {
    buffers.release(data);
    throw new VhdFormatError(
      'VHD_TRUNCATED',
      `VHD stream ended inside ${what}: got ${got} of ${VHD_BLOCK_SIZE} bytes; the export was cut short`,
      at + got,
    );
  }
  let released = false;
  const frame = buffers.frameOf?.(data);
  return {
    data,
    ...(frame !== undefined ? { frame } : {}),
    release: () => {
      if (released) throw new Error(`${what} was released twice`);
      released = true;
      buffers.release(data);
    },
  };
}

async function skipTo(cursor: ByteStreamCursor, offset: number, what: string): Promise<void> {
  if (offset < cursor.position) {
    throw new VhdFormatError(
      'VHD_BLOCK_ORDER',
      `${what} starts at ${offset}, before the current stream position ${cursor.position}; a VHD stream must present its structures in increasing offset order`,
      offset,
    );
  }
  const gap = offset - cursor.position;
  const skipped = await cursor.skip(gap);
  if (skipped < gap) {
    throw new VhdFormatError(
      'VHD_TRUNCATED',
      `VHD stream ended at ${cursor.position} before ${what} at ${offset}`,
      cursor.position,
    );
  }
}

function sameFooter(a: VhdFooter, b: VhdFooter): boolean {
  return a.uuid === b.uuid && a.currentSize === b.currentSize && a.diskType === b.diskType;
}

/**
 * Parses a dynamic or differencing VHD presented strictly in file order, as XAPI's export_raw_vdi
 * produces it: yields the metadata first, then each allocated block in stream order. Gaps between
 * structures are skipped; anything out of order, overlapping, truncated or with a bad checksum is a
 * VhdFormatError. Memory stays at the BAT plus one block; the source is stopped when iteration ends.
 */
export async function* parseVhdStream(
  source: ByteSource,
  options: VhdStreamReadOptions = {},
): AsyncGenerator<VhdStreamItem, void, undefined> {
  const buffers = options.blockBuffers;
  const cursor = new ByteStreamCursor(source);
  try {
    const footer = decodeVhdFooter(await readExact(cursor, VHD_FOOTER_SIZE, 'the footer copy'), 0);
    if (footer.diskType === 'fixed' || footer.dataOffset === undefined) {
      throw new VhdFormatError(
        'VHD_DISK_TYPE',
        'the VHD stream starts with a fixed-disk footer; only dynamic and differencing VHDs can be streamed',
        60,
      );
    }
    const headerOffset = footer.dataOffset;
    await skipTo(cursor, headerOffset, 'the dynamic header');
    const header = decodeVhdHeader(
      await readExact(cursor, VHD_HEADER_SIZE, 'the dynamic header'),
      headerOffset,
    );
    checkVhdTableDeclaration(footer, header, headerOffset);
    if (header.tableOffset < headerOffset + VHD_HEADER_SIZE) {
      throw new VhdFormatError(
        'VHD_TABLE_OFFSET',
        `BAT offset ${header.tableOffset} precedes the end of the header (${headerOffset + VHD_HEADER_SIZE}); a stream cannot go back to it`,
        headerOffset + 16,
      );
    }
    await skipTo(cursor, header.tableOffset, 'the BAT');
    const batBytes = vhdBatBytes(header.maxTableEntries);
    const bat = decodeBat(await readExact(cursor, batBytes, 'the BAT'), header.maxTableEntries);
    const layout = checkVhdLayout(footer, header, headerOffset, bat, undefined);
    const pending = layout.regions.filter(
      (region) => region.kind === 'block' || region.kind === 'parent-locator',
    );
    const parentLocatorPaths: { platform: string; path: string }[] = [];
    // Locators written before the first block are read now so the metadata can carry them.
    while (pending[0]?.kind === 'parent-locator') {
      const region = pending.shift();
      if (region === undefined) break;
      const locator = header.parentLocators.at(region.index);
      if (locator === undefined) continue;
      await skipTo(cursor, region.start, `parent locator ${region.index}`);
      if (locator.dataLength <= Math.min(locator.dataSpace, MAX_LOCATOR_TEXT)) {
        const data = await readExact(cursor, locator.dataLength, `parent locator ${region.index}`);
        parentLocatorPaths.push({
          platform: locator.platform,
          path: decodeParentLocatorData(locator.platform, data),
        });
      }
      await skipTo(cursor, region.end, `the end of parent locator ${region.index}`);
    }
    yield {
      type: 'metadata',
      footer,
      header,
      bat,
      blockCount: layout.blockCount,
      allocatedBlocks: layout.allocatedBlocks,
      parentLocatorPaths,
    };
    for (const region of pending) {
      if (region.kind !== 'block') {
        await skipTo(cursor, region.end, `parent locator ${region.index}`);
        continue;
      }
      await skipTo(cursor, region.start, `block ${region.index}`);
      const bitmap = await readExact(
        cursor,
        VHD_SECTOR_BITMAP_SIZE,
        `the sector bitmap of block ${region.index}`,
      );
      const what = `the data of block ${region.index}`;
      if (buffers === undefined) {
        const data = await readExact(cursor, VHD_BLOCK_SIZE, what);
        yield { type: 'block', index: region.index, bitmap, data };
      } else {
        yield { type: 'block', index: region.index, bitmap, ...(await readBlockInto(cursor, buffers, what)) };
      }
    }
    // Trailing footer, possibly after zero padding.
    for (;;) {
      const at = cursor.position;
      const tail = await readExact(cursor, VHD_FOOTER_SIZE, 'the trailing footer');
      if (tail.every((byte) => byte === 0)) continue;
      const trailing = decodeVhdFooter(tail, at);
      if (!sameFooter(trailing, footer)) {
        throw new VhdFormatError(
          'VHD_FOOTER_MISMATCH',
          `trailing footer (uuid ${trailing.uuid}, ${trailing.currentSize} bytes, ${trailing.diskType}) differs from the footer copy (uuid ${footer.uuid}, ${footer.currentSize} bytes, ${footer.diskType})`,
          at,
        );
      }
      break;
    }
    if (!(await cursor.atEnd())) {
      throw new VhdFormatError(
        'VHD_TRAILING_DATA',
        'the VHD stream continues after its trailing footer; it is not a single VHD',
        cursor.position,
      );
    }
  } finally {
    await cursor.close();
  }
}

/** The stream parser split in two: metadata now, blocks as an async iterator afterwards. */
export async function openVhdStream(
  source: ByteSource,
  options: VhdStreamReadOptions = {},
): Promise<{ metadata: VhdStreamMetadata; blocks: AsyncGenerator<VhdStreamBlock, void, undefined> }> {
  const items = parseVhdStream(source, options);
  const first = await items.next();
  if (first.done === true || first.value.type !== 'metadata') {
    await items.return();
    throw new VhdFormatError('VHD_TRUNCATED', 'the VHD stream yielded no metadata');
  }
  async function* blocks(): AsyncGenerator<VhdStreamBlock, void, undefined> {
    for await (const item of items) {
      if (item.type === 'block') yield item;
    }
  }
  return { metadata: first.value, blocks: blocks() };
}
