import {
  VHD_BLOCK_SIZE,
  VHD_HEADER_COOKIE,
  VHD_HEADER_SIZE,
  VHD_HEADER_VERSION,
  VHD_MAX_TABLE_ENTRIES,
  VHD_MAX_VIRTUAL_SIZE,
  VHD_SECTOR_SIZE,
} from './vhd.constants';
import { bytesToUuid, fromVhdTimestamp, toVhdTimestamp, uuidToBytes } from './vhd-footer.codec';
import { VhdFormatError } from './vhd-format.error';
import { vhdChecksum } from './vhd-footer.codec';

/** Platform codes of parent locators: Windows absolute/relative UTF-16LE paths, and a UTF-8 file URL. */
export type VhdParentLocatorPlatform = 'W2ku' | 'W2ru' | 'MacX';

export interface VhdParentLocator {
  platform: string;
  /** Bytes reserved for the locator data in the file. */
  dataSpace: number;
  dataLength: number;
  dataOffset: number;
}

/** The 1024-byte dynamic disk header that follows the footer copy. */
export interface VhdHeader {
  tableOffset: number;
  headerVersion: number;
  maxTableEntries: number;
  blockSize: number;
  checksum: number;
  /** All zeros on a dynamic disk. */
  parentUuid: string;
  parentTimestamp: Date;
  parentUnicodeName: string;
  parentLocators: VhdParentLocator[];
}

const FIELD = {
  cookie: 0,
  dataOffset: 8,
  tableOffset: 16,
  headerVersion: 24,
  maxTableEntries: 28,
  blockSize: 32,
  checksum: 36,
  parentUuid: 40,
  parentTimestamp: 56,
  parentUnicodeName: 64,
  parentLocators: 576,
} as const;
const PARENT_NAME_BYTES = 512;
const LOCATOR_ENTRY_SIZE = 24;
const LOCATOR_COUNT = 8;
export const VHD_NULL_UUID = '00000000-0000-0000-0000-000000000000';

export interface VhdHeaderInit {
  tableOffset: number;
  maxTableEntries: number;
  parentUuid?: string;
  parentTimestamp?: Date;
  parentUnicodeName?: string;
  parentLocators?: readonly VhdParentLocator[];
}

function encodeUtf16Be(text: string): Buffer {
  const little = Buffer.from(text, 'utf16le');
  return little.swap16();
}

export function encodeVhdHeader(init: VhdHeaderInit): Buffer {
  const buffer = Buffer.alloc(VHD_HEADER_SIZE);
  buffer.write(VHD_HEADER_COOKIE, FIELD.cookie, 'latin1');
  buffer.writeBigUInt64BE(0xffffffffffffffffn, FIELD.dataOffset);
  buffer.writeBigUInt64BE(BigInt(init.tableOffset), FIELD.tableOffset);
  buffer.writeUInt32BE(VHD_HEADER_VERSION, FIELD.headerVersion);
  buffer.writeUInt32BE(init.maxTableEntries, FIELD.maxTableEntries);
  buffer.writeUInt32BE(VHD_BLOCK_SIZE, FIELD.blockSize);
  uuidToBytes(init.parentUuid ?? VHD_NULL_UUID).copy(buffer, FIELD.parentUuid);
  buffer.writeUInt32BE(
    init.parentTimestamp === undefined ? 0 : toVhdTimestamp(init.parentTimestamp),
    FIELD.parentTimestamp,
  );
  const name = encodeUtf16Be(init.parentUnicodeName ?? '');
  if (name.length > PARENT_NAME_BYTES) {
    throw new VhdFormatError(
      'VHD_OPTION',
      `parent name "${init.parentUnicodeName ?? ''}" takes ${name.length} bytes in UTF-16, the header holds ${PARENT_NAME_BYTES}; use a shorter name`,
    );
  }
  name.copy(buffer, FIELD.parentUnicodeName);
  const locators = init.parentLocators ?? [];
  if (locators.length > LOCATOR_COUNT) {
    throw new VhdFormatError('VHD_OPTION', `a VHD holds at most ${LOCATOR_COUNT} parent locators`);
  }
  locators.forEach((locator, i) => {
    const at = FIELD.parentLocators + i * LOCATOR_ENTRY_SIZE;
    buffer.write(locator.platform.padEnd(4, '\0').slice(0, 4), at, 'latin1');
    // The specification counts the space in sectors; Windows writes bytes. We follow the spec.
    buffer.writeUInt32BE(Math.ceil(locator.dataSpace / VHD_SECTOR_SIZE), at + 4);
    buffer.writeUInt32BE(locator.dataLength, at + 8);
    buffer.writeBigUInt64BE(BigInt(locator.dataOffset), at + 16);
  });
  buffer.writeUInt32BE(vhdChecksum(buffer, FIELD.checksum), FIELD.checksum);
  return buffer;
}

/** Decodes and checks the dynamic header located at `base` in the file or stream. */
export function decodeVhdHeader(buffer: Buffer, base: number): VhdHeader {
  if (buffer.length < VHD_HEADER_SIZE) {
    throw new VhdFormatError('VHD_TRUNCATED', `VHD header is ${buffer.length} bytes, expected 1024`, base);
  }
  const cookie = buffer.toString('latin1', 0, 8);
  if (cookie !== VHD_HEADER_COOKIE) {
    throw new VhdFormatError(
      'VHD_HEADER_COOKIE',
      `VHD dynamic header cookie is ${JSON.stringify(cookie)}, expected "cxsparse": the header is damaged or misplaced`,
      base,
    );
  }
  const checksum = buffer.readUInt32BE(FIELD.checksum);
  const expected = vhdChecksum(buffer.subarray(0, VHD_HEADER_SIZE), FIELD.checksum);
  if (checksum !== expected) {
    throw new VhdFormatError(
      'VHD_HEADER_CHECKSUM',
      `VHD header checksum is 0x${checksum.toString(16)}, computed 0x${expected.toString(16)}: the header is damaged`,
      base + FIELD.checksum,
    );
  }
  const headerVersion = buffer.readUInt32BE(FIELD.headerVersion);
  if (headerVersion >>> 16 !== 1) {
    throw new VhdFormatError(
      'VHD_HEADER_VERSION',
      `VHD header version 0x${headerVersion.toString(16)} is not supported (only 1.x)`,
      base + FIELD.headerVersion,
    );
  }
  const blockSize = buffer.readUInt32BE(FIELD.blockSize);
  if (blockSize !== VHD_BLOCK_SIZE) {
    throw new VhdFormatError(
      'VHD_BLOCK_SIZE',
      `VHD block size is ${blockSize} bytes; only 2 MiB blocks (${VHD_BLOCK_SIZE}) are supported`,
      base + FIELD.blockSize,
    );
  }
  const maxTableEntries = buffer.readUInt32BE(FIELD.maxTableEntries);
  if (maxTableEntries > VHD_MAX_TABLE_ENTRIES) {
    throw new VhdFormatError(
      'VHD_MAX_TABLE_ENTRIES',
      `VHD header declares ${maxTableEntries} BAT entries, more than the ${VHD_MAX_TABLE_ENTRIES} a 2 TiB disk needs`,
      base + FIELD.maxTableEntries,
    );
  }
  const tableOffset = buffer.readBigUInt64BE(FIELD.tableOffset);
  if (tableOffset > BigInt(VHD_MAX_VIRTUAL_SIZE)) {
    throw new VhdFormatError(
      'VHD_TABLE_OFFSET',
      `VHD BAT offset ${tableOffset} is beyond any possible file size`,
      base + FIELD.tableOffset,
    );
  }
  const nameBytes = Buffer.from(
    buffer.subarray(FIELD.parentUnicodeName, FIELD.parentUnicodeName + PARENT_NAME_BYTES),
  ).swap16();
  const parentUnicodeName = nameBytes.toString('utf16le').replace(/\0.*$/s, '');
  const parentLocators: VhdParentLocator[] = [];
  for (let i = 0; i < LOCATOR_COUNT; i++) {
    const at = FIELD.parentLocators + i * LOCATOR_ENTRY_SIZE;
    const code = buffer.readUInt32BE(at);
    if (code === 0) continue;
    const rawSpace = buffer.readUInt32BE(at + 4);
    const dataLength = buffer.readUInt32BE(at + 8);
    const dataOffset = buffer.readBigUInt64BE(at + 16);
    if (dataOffset > BigInt(VHD_MAX_VIRTUAL_SIZE)) {
      throw new VhdFormatError(
        'VHD_PARENT_LOCATOR',
        `VHD parent locator ${i} points at ${dataOffset}, beyond any possible file size`,
        base + at + 16,
      );
    }
    parentLocators.push({
      platform: buffer.toString('latin1', at, at + 4),
      // Spec says sectors, Windows writes bytes: small values can only be sector counts.
      dataSpace: rawSpace < VHD_SECTOR_SIZE ? rawSpace * VHD_SECTOR_SIZE : rawSpace,
      dataLength,
      dataOffset: Number(dataOffset),
    });
  }
  return {
    tableOffset: Number(tableOffset),
    headerVersion,
    maxTableEntries,
    blockSize,
    checksum,
    parentUuid: bytesToUuid(buffer.subarray(FIELD.parentUuid, FIELD.parentUuid + 16)),
    parentTimestamp: fromVhdTimestamp(buffer.readUInt32BE(FIELD.parentTimestamp)),
    parentUnicodeName,
    parentLocators,
  };
}

/** Encodes the text of a parent locator in the encoding its platform code implies. */
export function encodeParentLocatorData(platform: VhdParentLocatorPlatform, path: string): Buffer {
  switch (platform) {
    case 'W2ku':
    case 'W2ru':
      return Buffer.from(path, 'utf16le');
    case 'MacX':
      return Buffer.from(path, 'utf8');
  }
}

export function decodeParentLocatorData(platform: string, data: Buffer): string {
  return platform === 'MacX' ? data.toString('utf8') : data.toString('utf16le');
}
