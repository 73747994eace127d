import {
  VHD_BLOCK_SIZE,
  VHD_MAX_VIRTUAL_SIZE,
  VHD_FOOTER_SIZE,
  VHD_HEADER_SIZE,
  VHD_SECTOR_BITMAP_SIZE,
  VHD_UNALLOCATED,
} from './vhd.constants';
import { decodeVhdFooter, type VhdFooter } from './vhd-footer.codec';
import { decodeParentLocatorData, decodeVhdHeader, type VhdHeader } from './vhd-header.codec';
import { checkVhdLayout, decodeBat, type VhdLayout } from './vhd-layout.check';
import { VhdFormatError } from './vhd-format.error';
import { openFileSource, type RangedRead, type RangedSource } from './ranged.source';
import type { VhdDisk } from './vhd-disk.contract';

async function readExactAt(
  source: RangedSource,
  offset: number,
  length: number,
  what: string,
): Promise<Buffer> {
  const buffer = await source.read(offset, length);
  if (buffer.length < length) {
    throw new VhdFormatError(
      'VHD_TRUNCATED',
      `could read only ${buffer.length} of the ${length} bytes of ${what}; the VHD is truncated`,
      offset + buffer.length,
    );
  }
  return buffer;
}

export function checkRange(virtualSize: number, offset: number, length: number): void {
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > virtualSize
  ) {
    throw new VhdFormatError(
      'VHD_RANGE',
      `range ${offset}+${length} is outside the ${virtualSize}-byte disk; ask for bytes below ${virtualSize}`,
    );
  }
}

/** Copies a byte range out of a disk readable block by block. */
export async function readRangeByBlocks(disk: VhdDisk, offset: number, length: number): Promise<Buffer> {
  checkRange(disk.virtualSize, offset, length);
  const result = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const position = offset + done;
    const index = Math.floor(position / VHD_BLOCK_SIZE);
    const within = position - index * VHD_BLOCK_SIZE;
    const part = Math.min(VHD_BLOCK_SIZE - within, length - done);
    const block = await disk.readBlockData(index);
    block.copy(result, done, within, within + part);
    done += part;
  }
  return result;
}

/**
 * Random access to one dynamic or differencing VHD over any ranged source (a file, a remote object).
 * The footer, header and BAT are read and checked once at open; blocks are read on demand.
 */
export class VhdImage implements VhdDisk {
  private constructor(
    private readonly source: RangedSource,
    readonly footer: VhdFooter,
    readonly header: VhdHeader,
    readonly bat: Uint32Array,
    readonly layout: VhdLayout,
    readonly parentLocatorPaths: { platform: string; path: string }[],
  ) {}

  /**
   * Opens a VHD from a ranged source with a known size (the footer at the end is authoritative and
   * every structure is checked against the file size), or from a bare ranged read function (the
   * footer copy at offset 0 is used; blocks past the end are caught when read).
   */
  static async open(input: RangedSource | RangedRead): Promise<VhdImage> {
    const source: RangedSource = typeof input === 'function' ? { size: Number.NaN, read: input } : input;
    const size = typeof input === 'function' ? undefined : input.size;
    if (size !== undefined && size < VHD_FOOTER_SIZE + VHD_HEADER_SIZE + VHD_FOOTER_SIZE) {
      throw new VhdFormatError(
        'VHD_FILE_SIZE',
        `a ${size}-byte object is too small to be a dynamic VHD (at least ${VHD_FOOTER_SIZE * 2 + VHD_HEADER_SIZE} bytes)`,
        0,
      );
    }
    const footerOffset = size === undefined ? 0 : size - VHD_FOOTER_SIZE;
    // Without a size, nothing may extend past the largest possible VHD file.
    const dataEnd = size === undefined ? VHD_MAX_VIRTUAL_SIZE * 2 : footerOffset;
    const footer = decodeVhdFooter(
      await readExactAt(
        source,
        footerOffset,
        VHD_FOOTER_SIZE,
        size === undefined ? 'the footer copy' : 'the footer',
      ),
      footerOffset,
    );
    if (footer.diskType === 'fixed' || footer.dataOffset === undefined) {
      throw new VhdFormatError(
        'VHD_DISK_TYPE',
        'this is a fixed VHD: its data is raw, read the first bytes of the file as a raw disk instead',
        footerOffset + 60,
      );
    }
    const headerOffset = footer.dataOffset;
    if (headerOffset < VHD_FOOTER_SIZE || headerOffset + VHD_HEADER_SIZE > dataEnd) {
      throw new VhdFormatError(
        'VHD_FOOTER_DATA_OFFSET',
        `the dynamic header offset ${headerOffset} is not between the footer copy and the footer (${dataEnd})`,
        footerOffset + 16,
      );
    }
    const header = decodeVhdHeader(
      await readExactAt(source, headerOffset, VHD_HEADER_SIZE, 'the dynamic header'),
      headerOffset,
    );
    // Bound the BAT by the file before reading it: a damaged header must not make us allocate.
    const batBytes = Math.ceil((header.maxTableEntries * 4) / 512) * 512;
    if (header.tableOffset + batBytes > dataEnd) {
      throw new VhdFormatError(
        'VHD_TABLE_OFFSET',
        `the BAT (${batBytes} bytes at ${header.tableOffset}) runs past the footer at ${dataEnd}: the header is damaged or the file truncated`,
        headerOffset + 16,
      );
    }
    const bat = decodeBat(
      await readExactAt(source, header.tableOffset, batBytes, 'the BAT'),
      header.maxTableEntries,
    );
    const layout = checkVhdLayout(footer, header, headerOffset, bat, size);
    const parentLocatorPaths: { platform: string; path: string }[] = [];
    if (footer.diskType === 'differencing') {
      for (const locator of header.parentLocators) {
        if (
          locator.dataLength === 0 ||
          locator.dataLength > locator.dataSpace ||
          locator.dataLength > 64 * 1024
        )
          continue;
        const data = await readExactAt(source, locator.dataOffset, locator.dataLength, 'a parent locator');
        parentLocatorPaths.push({
          platform: locator.platform,
          path: decodeParentLocatorData(locator.platform, data),
        });
      }
    }
    return new VhdImage(source, footer, header, bat, layout, parentLocatorPaths);
  }

  /** Opens a VHD file; close() releases the file. */
  static async openFile(path: string): Promise<VhdImage> {
    const source = await openFileSource(path);
    try {
      return await VhdImage.open(source);
    } catch (error) {
      await source.close();
      throw error;
    }
  }

  get virtualSize(): number {
    return this.footer.currentSize;
  }

  get blockCount(): number {
    return this.layout.blockCount;
  }

  get allocatedBlocks(): readonly number[] {
    return this.layout.allocatedBlocks;
  }

  get type(): 'dynamic' | 'differencing' {
    return this.footer.diskType === 'differencing' ? 'differencing' : 'dynamic';
  }

  get uuid(): string {
    return this.footer.uuid;
  }

  hasBlock(index: number): boolean {
    return (
      index >= 0 && index < this.layout.blockCount && (this.bat[index] ?? VHD_UNALLOCATED) !== VHD_UNALLOCATED
    );
  }

  /** The block's sector bitmap and data as stored, or undefined when the BAT has no entry for it. */
  async readBlock(index: number): Promise<{ bitmap: Buffer; data: Buffer } | undefined> {
    if (!Number.isInteger(index) || index < 0 || index >= this.layout.blockCount) {
      throw new VhdFormatError(
        'VHD_RANGE',
        `block ${index} does not exist; the disk has ${this.layout.blockCount} blocks`,
      );
    }
    const entry = this.bat[index] ?? VHD_UNALLOCATED;
    if (entry === VHD_UNALLOCATED) return undefined;
    const offset = entry * 512;
    const raw = await readExactAt(
      this.source,
      offset,
      VHD_SECTOR_BITMAP_SIZE + VHD_BLOCK_SIZE,
      `block ${index}`,
    );
    return { bitmap: raw.subarray(0, VHD_SECTOR_BITMAP_SIZE), data: raw.subarray(VHD_SECTOR_BITMAP_SIZE) };
  }

  /**
   * The block's data alone; zeros when unallocated. Like qemu, the sector bitmap is not applied for
   * a single image: it only decides which layer wins in a chain (see VhdChain).
   */
  async readBlockData(index: number): Promise<Buffer> {
    const block = await this.readBlock(index);
    return block?.data ?? Buffer.alloc(VHD_BLOCK_SIZE);
  }

  read(offset: number, length: number): Promise<Buffer> {
    return readRangeByBlocks(this, offset, length);
  }

  async close(): Promise<void> {
    await this.source.close?.();
  }
}
