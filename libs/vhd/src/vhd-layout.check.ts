import {
  VHD_BLOCK_FOOTPRINT,
  VHD_BLOCK_SIZE,
  VHD_FOOTER_SIZE,
  VHD_HEADER_SIZE,
  VHD_SECTOR_SIZE,
  VHD_UNALLOCATED,
} from './vhd.constants';
import type { VhdFooter } from './vhd-footer.codec';
import type { VhdHeader } from './vhd-header.codec';
import { VhdFormatError } from './vhd-format.error';

/** A byte range of the VHD file and what occupies it. */
export interface VhdRegion {
  start: number;
  end: number;
  kind: 'footer-copy' | 'header' | 'bat' | 'parent-locator' | 'block' | 'footer';
  /** Block index for blocks, locator number for parent locators. */
  index: number;
}

/** Where every structure of a dynamic or differencing VHD sits, checked for consistency. */
export interface VhdLayout {
  blockCount: number;
  batBytes: number;
  /** Ascending block indexes that have data in this file. */
  allocatedBlocks: number[];
  /** Metadata, locators and blocks sorted by start offset (the order a stream presents them). */
  regions: VhdRegion[];
}

export function vhdBatBytes(maxTableEntries: number): number {
  return Math.ceil((maxTableEntries * 4) / VHD_SECTOR_SIZE) * VHD_SECTOR_SIZE;
}

/** The first BAT checks that need only the header: run them before reading the BAT itself. */
export function checkVhdTableDeclaration(footer: VhdFooter, header: VhdHeader, headerOffset: number): number {
  const blockCount = Math.ceil(footer.currentSize / VHD_BLOCK_SIZE);
  if (header.maxTableEntries < blockCount) {
    throw new VhdFormatError(
      'VHD_MAX_TABLE_ENTRIES',
      `VHD header declares ${header.maxTableEntries} BAT entries but the ${footer.currentSize}-byte disk needs ${blockCount}`,
      headerOffset + 28,
    );
  }
  return blockCount;
}

/**
 * Checks that the BAT only points inside the file, past the metadata, without two structures
 * overlapping, and returns the layout. `fileSize` is unknown for a stream (the end is then checked
 * while reading).
 */
export function checkVhdLayout(
  footer: VhdFooter,
  header: VhdHeader,
  headerOffset: number,
  bat: Uint32Array,
  fileSize: number | undefined,
): VhdLayout {
  const blockCount = checkVhdTableDeclaration(footer, header, headerOffset);
  const batBytes = vhdBatBytes(header.maxTableEntries);
  const regions: VhdRegion[] = [
    { start: 0, end: VHD_FOOTER_SIZE, kind: 'footer-copy', index: 0 },
    { start: headerOffset, end: headerOffset + VHD_HEADER_SIZE, kind: 'header', index: 0 },
    { start: header.tableOffset, end: header.tableOffset + batBytes, kind: 'bat', index: 0 },
  ];
  header.parentLocators.forEach((locator, i) => {
    if (footer.diskType !== 'differencing' || locator.dataSpace === 0) return;
    regions.push({
      start: locator.dataOffset,
      end: locator.dataOffset + locator.dataSpace,
      kind: 'parent-locator',
      index: i,
    });
  });
  const allocatedBlocks: number[] = [];
  for (let index = 0; index < bat.length; index++) {
    const entry = bat[index] ?? VHD_UNALLOCATED;
    if (entry === VHD_UNALLOCATED) continue;
    if (index >= blockCount) {
      throw new VhdFormatError(
        'VHD_BAT_ENTRY',
        `BAT entry ${index} is allocated but the ${footer.currentSize}-byte disk has only ${blockCount} blocks`,
        header.tableOffset + index * 4,
      );
    }
    const start = entry * VHD_SECTOR_SIZE;
    allocatedBlocks.push(index);
    regions.push({ start, end: start + VHD_BLOCK_FOOTPRINT, kind: 'block', index });
  }
  regions.sort((a, b) => a.start - b.start);
  const dataEnd = fileSize === undefined ? undefined : fileSize - VHD_FOOTER_SIZE;
  let previous: VhdRegion | undefined;
  for (const region of regions) {
    if (previous !== undefined && region.start < previous.end) {
      throw overlapError(region, previous, header.tableOffset);
    }
    if (dataEnd !== undefined && region.end > dataEnd) {
      throw new VhdFormatError(
        region.kind === 'block'
          ? 'VHD_BAT_ENTRY'
          : region.kind === 'bat'
            ? 'VHD_TABLE_OFFSET'
            : 'VHD_FILE_SIZE',
        `${describe(region)} spans bytes ${region.start}-${region.end} but the file's data ends at ${dataEnd} (footer at ${dataEnd}, file ${fileSize} bytes): the VHD is truncated or its ${region.kind === 'block' ? 'BAT' : 'header'} is damaged`,
        region.kind === 'block' ? header.tableOffset + region.index * 4 : region.start,
      );
    }
    previous = region;
  }
  return { blockCount, batBytes, allocatedBlocks, regions };
}

function describe(region: VhdRegion): string {
  switch (region.kind) {
    case 'block':
      return `block ${region.index}`;
    case 'parent-locator':
      return `parent locator ${region.index}`;
    case 'bat':
      return 'the BAT';
    case 'header':
      return 'the dynamic header';
    case 'footer-copy':
      return 'the footer copy';
    case 'footer':
      return 'the footer';
  }
}

function overlapError(region: VhdRegion, previous: VhdRegion, tableOffset: number): VhdFormatError {
  const blame = region.kind === 'block' ? region : previous.kind === 'block' ? previous : region;
  return new VhdFormatError(
    blame.kind === 'block'
      ? 'VHD_BLOCK_OVERLAP'
      : blame.kind === 'bat'
        ? 'VHD_TABLE_OFFSET'
        : 'VHD_PARENT_LOCATOR',
    `${describe(region)} (bytes ${region.start}-${region.end}) overlaps ${describe(previous)} (bytes ${previous.start}-${previous.end}): the BAT or header is damaged`,
    blame.kind === 'block' ? tableOffset + blame.index * 4 : blame.start,
  );
}

export function decodeBat(buffer: Buffer, entries: number): Uint32Array {
  const bat = new Uint32Array(entries);
  for (let i = 0; i < entries; i++) bat[i] = buffer.readUInt32BE(i * 4);
  return bat;
}
