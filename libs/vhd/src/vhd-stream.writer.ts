import { Readable, addAbortSignal } from 'node:stream';
import { randomUUID } from 'node:crypto';
import {
  VHD_BLOCK_FOOTPRINT,
  VHD_BLOCK_SIZE,
  VHD_FOOTER_SIZE,
  VHD_HEADER_SIZE,
  VHD_MAX_VIRTUAL_SIZE,
  VHD_SECTOR_BITMAP_SIZE,
  VHD_SECTOR_SIZE,
} from './vhd.constants';
import { encodeVhdFooter } from './vhd-footer.codec';
import {
  encodeParentLocatorData,
  encodeVhdHeader,
  type VhdParentLocator,
  type VhdParentLocatorPlatform,
} from './vhd-header.codec';
import { VhdFormatError } from './vhd-format.error';

export interface VhdStreamOptions {
  /** Bytes, exact; a multiple of 512 (need not be a multiple of 2 MiB). */
  virtualSize: number;
  /** Ascending block indexes present in this VHD. */
  allocatedBlocks: readonly number[];
  /** The 2 MiB block; the last block of the disk may be shorter and is padded with zeros. */
  readBlock(index: number): Promise<Buffer>;
  type: 'dynamic' | 'differencing';
  uuid?: string;
  parentUuid?: string;
  parentUnicodeName?: string;
  parentTimestamp?: Date;
  /** Paths to the parent written as parent locators (differencing disks only). */
  parentLocators?: readonly { platform: VhdParentLocatorPlatform; path: string }[];
  timestamp?: Date;
  /** Per-block sector bitmap (512 bytes, bit set = sector present); default all set. */
  sectorBitmap?(index: number): Buffer | undefined;
  signal?: AbortSignal;
}

/** Number of 2 MiB blocks (BAT entries) a disk of this size needs. */
export function vhdBlockCount(virtualSize: number): number {
  return Math.ceil(virtualSize / VHD_BLOCK_SIZE);
}

/** Size in bytes of the VHD file createVhdStream produces for these options. */
export function vhdStreamLength(options: {
  virtualSize: number;
  allocatedBlocks: readonly unknown[];
  parentLocators?: readonly { platform: VhdParentLocatorPlatform; path: string }[];
}): number {
  return planLayout(options.virtualSize, options.allocatedBlocks.length, options.parentLocators ?? [])
    .fileSize;
}

interface Layout {
  tableOffset: number;
  batBytes: number;
  locators: { entry: VhdParentLocator; data: Buffer }[];
  firstBlockOffset: number;
  fileSize: number;
}

function padToSector(length: number): number {
  return Math.ceil(length / VHD_SECTOR_SIZE) * VHD_SECTOR_SIZE;
}

function planLayout(
  virtualSize: number,
  blockCount: number,
  parentLocators: readonly { platform: VhdParentLocatorPlatform; path: string }[],
): Layout {
  const tableOffset = VHD_FOOTER_SIZE + VHD_HEADER_SIZE;
  const batBytes = padToSector(vhdBlockCount(virtualSize) * 4);
  let offset = tableOffset + batBytes;
  const locators = parentLocators.map(({ platform, path }) => {
    const data = encodeParentLocatorData(platform, path);
    const dataSpace = padToSector(Math.max(data.length, 1));
    const entry: VhdParentLocator = { platform, dataSpace, dataLength: data.length, dataOffset: offset };
    offset += dataSpace;
    return { entry, data };
  });
  return {
    tableOffset,
    batBytes,
    locators,
    firstBlockOffset: offset,
    fileSize: offset + blockCount * VHD_BLOCK_FOOTPRINT + VHD_FOOTER_SIZE,
  };
}

function checkOptions(options: VhdStreamOptions): void {
  const { virtualSize, allocatedBlocks } = options;
  if (virtualSize > VHD_MAX_VIRTUAL_SIZE) {
    throw new VhdFormatError(
      'VHD_VIRTUAL_SIZE',
      `virtual size ${virtualSize} exceeds the VHD maximum of ${VHD_MAX_VIRTUAL_SIZE} bytes (2 TiB)`,
    );
  }
  if (!Number.isSafeInteger(virtualSize) || virtualSize <= 0 || virtualSize % VHD_SECTOR_SIZE !== 0) {
    throw new VhdFormatError(
      'VHD_VIRTUAL_SIZE',
      `virtual size ${virtualSize} is not a positive multiple of 512 bytes; round the disk size up to a sector`,
    );
  }
  const count = vhdBlockCount(virtualSize);
  let previous = -1;
  for (const index of allocatedBlocks) {
    if (!Number.isInteger(index) || index <= previous || index >= count) {
      throw new VhdFormatError(
        'VHD_OPTION',
        `allocated block ${index} is out of order or outside the disk's ${count} blocks; pass ascending indexes below ${count}`,
      );
    }
    previous = index;
  }
  if (options.type === 'differencing' && options.parentUuid === undefined) {
    throw new VhdFormatError(
      'VHD_OPTION',
      'a differencing VHD needs parentUuid (the UUID of its parent VHD)',
    );
  }
}

const ALL_SECTORS_PRESENT = Buffer.alloc(VHD_SECTOR_BITMAP_SIZE, 0xff);

/**
 * Streams a dynamic or differencing VHD in XAPI's export order: footer copy (512), dynamic header
 * (1024), BAT (padded to 512), parent locator data if any, then each allocated block (sector bitmap +
 * 2 MiB data) at increasing offsets, then the footer. Blocks are pulled from readBlock only when the
 * consumer wants more bytes, so memory stays at about one block whatever the disk size.
 */
export function createVhdStream(options: VhdStreamOptions): Readable {
  checkOptions(options);
  const layout = planLayout(
    options.virtualSize,
    options.allocatedBlocks.length,
    options.parentLocators ?? [],
  );
  const timestamp = options.timestamp ?? new Date();
  const footer = encodeVhdFooter({
    diskType: options.type,
    currentSize: options.virtualSize,
    dataOffset: VHD_FOOTER_SIZE,
    uuid: options.uuid ?? randomUUID(),
    timestamp,
  });
  const header = encodeVhdHeader({
    tableOffset: layout.tableOffset,
    maxTableEntries: vhdBlockCount(options.virtualSize),
    ...(options.type === 'differencing'
      ? {
          parentUuid: options.parentUuid,
          parentTimestamp: options.parentTimestamp,
          parentUnicodeName: options.parentUnicodeName,
          parentLocators: layout.locators.map(({ entry }) => entry),
        }
      : {}),
  });

  async function* generate(): AsyncGenerator<Buffer> {
    yield footer;
    yield header;
    // 0xFFFFFFFF marks an unallocated entry.
    const bat = Buffer.alloc(layout.batBytes, 0xff);
    options.allocatedBlocks.forEach((index, position) => {
      const offset = layout.firstBlockOffset + position * VHD_BLOCK_FOOTPRINT;
      bat.writeUInt32BE(offset / VHD_SECTOR_SIZE, index * 4);
    });
    yield bat;
    if (options.type === 'differencing') {
      for (const { entry, data } of layout.locators) {
        const padded = Buffer.alloc(entry.dataSpace);
        data.copy(padded);
        yield padded;
      }
    }
    const lastIndex = vhdBlockCount(options.virtualSize) - 1;
    for (const index of options.allocatedBlocks) {
      const bitmap = options.sectorBitmap?.(index) ?? ALL_SECTORS_PRESENT;
      if (bitmap.length !== VHD_SECTOR_BITMAP_SIZE) {
        throw new VhdFormatError(
          'VHD_OPTION',
          `sector bitmap of block ${index} is ${bitmap.length} bytes, expected ${VHD_SECTOR_BITMAP_SIZE}`,
        );
      }
      yield bitmap;
      const data = await options.readBlock(index);
      const minimum = index === lastIndex ? options.virtualSize - index * VHD_BLOCK_SIZE : VHD_BLOCK_SIZE;
      if (data.length < minimum || data.length > VHD_BLOCK_SIZE) {
        throw new VhdFormatError(
          'VHD_BLOCK_DATA',
          `readBlock(${index}) returned ${data.length} bytes, expected ${minimum === VHD_BLOCK_SIZE ? VHD_BLOCK_SIZE : `${minimum} to ${VHD_BLOCK_SIZE}`}`,
        );
      }
      yield data;
      if (data.length < VHD_BLOCK_SIZE) yield Buffer.alloc(VHD_BLOCK_SIZE - data.length);
    }
    yield footer;
  }

  const stream = Readable.from(generate(), { objectMode: false });
  if (options.signal !== undefined) addAbortSignal(options.signal, stream);
  return stream;
}
