import { randomUUID } from 'node:crypto';
import {
  VHD_CREATOR_APPLICATION,
  VHD_CREATOR_HOST_OS,
  VHD_CREATOR_VERSION,
  VHD_DISK_TYPE,
  VHD_EPOCH_OFFSET_SECONDS,
  VHD_FEATURES_RESERVED,
  VHD_FOOTER_COOKIE,
  VHD_FOOTER_SIZE,
  VHD_FORMAT_VERSION,
  VHD_MAX_VIRTUAL_SIZE,
  VHD_SECTOR_SIZE,
  type VhdDiskType,
} from './vhd.constants';
import { VhdFormatError } from './vhd-format.error';

export interface VhdGeometry {
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
}

/** The 512-byte footer (and its copy at offset 0 of dynamic and differencing disks). */
export interface VhdFooter {
  features: number;
  formatVersion: number;
  /** Absolute offset of the dynamic header; undefined for fixed disks. */
  dataOffset: number | undefined;
  timestamp: Date;
  creatorApplication: string;
  creatorVersion: number;
  creatorHostOs: number;
  originalSize: number;
  currentSize: number;
  geometry: VhdGeometry;
  diskType: VhdDiskType;
  checksum: number;
  uuid: string;
  savedState: boolean;
}

const FIELD = {
  cookie: 0,
  features: 8,
  formatVersion: 12,
  dataOffset: 16,
  timestamp: 24,
  creatorApplication: 28,
  creatorVersion: 32,
  creatorHostOs: 36,
  originalSize: 40,
  currentSize: 48,
  cylinders: 56,
  heads: 58,
  sectorsPerTrack: 59,
  diskType: 60,
  checksum: 64,
  uuid: 68,
  savedState: 84,
} as const;

/** One's complement of the byte sum, skipping the 4-byte checksum field itself. */
export function vhdChecksum(buffer: Buffer, checksumOffset: number): number {
  let sum = 0;
  for (let i = 0; i < buffer.length; i++) {
    if (i < checksumOffset || i >= checksumOffset + 4) sum += buffer[i] ?? 0;
  }
  return ~sum >>> 0;
}

export function toVhdTimestamp(date: Date): number {
  const seconds = Math.floor(date.getTime() / 1000) - VHD_EPOCH_OFFSET_SECONDS;
  return Math.min(Math.max(seconds, 0), 0xffffffff);
}

export function fromVhdTimestamp(value: number): Date {
  return new Date((value + VHD_EPOCH_OFFSET_SECONDS) * 1000);
}

export function uuidToBytes(uuid: string): Buffer {
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) {
    throw new VhdFormatError(
      'VHD_OPTION',
      `"${uuid}" is not a UUID; pass 32 hex digits with optional dashes`,
    );
  }
  return Buffer.from(hex, 'hex');
}

export function bytesToUuid(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The CHS geometry the VHD specification derives from a size (its appendix algorithm). Readers that
 * trust the geometry would see cylinders*heads*sectors*512 bytes, which is why we also set a creator
 * that makes them trust currentSize instead.
 */
export function vhdGeometry(size: number): VhdGeometry {
  let totalSectors = Math.floor(size / VHD_SECTOR_SIZE);
  const maxSectors = 65535 * 16 * 255;
  if (totalSectors > maxSectors) totalSectors = maxSectors;
  let sectorsPerTrack: number;
  let heads: number;
  let cylinderTimesHeads: number;
  if (totalSectors >= 65535 * 16 * 63) {
    sectorsPerTrack = 255;
    heads = 16;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
  } else {
    sectorsPerTrack = 17;
    cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    heads = Math.max(Math.floor((cylinderTimesHeads + 1023) / 1024), 4);
    if (cylinderTimesHeads >= heads * 1024 || heads > 16) {
      sectorsPerTrack = 31;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
    if (cylinderTimesHeads >= heads * 1024) {
      sectorsPerTrack = 63;
      heads = 16;
      cylinderTimesHeads = Math.floor(totalSectors / sectorsPerTrack);
    }
  }
  return { cylinders: Math.floor(cylinderTimesHeads / heads), heads, sectorsPerTrack };
}

export interface VhdFooterInit {
  diskType: VhdDiskType;
  currentSize: number;
  dataOffset: number | undefined;
  uuid?: string;
  timestamp?: Date;
}

export function encodeVhdFooter(init: VhdFooterInit): Buffer {
  const buffer = Buffer.alloc(VHD_FOOTER_SIZE);
  buffer.write(VHD_FOOTER_COOKIE, FIELD.cookie, 'latin1');
  buffer.writeUInt32BE(VHD_FEATURES_RESERVED, FIELD.features);
  buffer.writeUInt32BE(VHD_FORMAT_VERSION, FIELD.formatVersion);
  buffer.writeBigUInt64BE(
    init.dataOffset === undefined ? 0xffffffffffffffffn : BigInt(init.dataOffset),
    FIELD.dataOffset,
  );
  buffer.writeUInt32BE(toVhdTimestamp(init.timestamp ?? new Date()), FIELD.timestamp);
  buffer.write(VHD_CREATOR_APPLICATION, FIELD.creatorApplication, 'latin1');
  buffer.writeUInt32BE(VHD_CREATOR_VERSION, FIELD.creatorVersion);
  buffer.writeUInt32BE(VHD_CREATOR_HOST_OS, FIELD.creatorHostOs);
  buffer.writeBigUInt64BE(BigInt(init.currentSize), FIELD.originalSize);
  buffer.writeBigUInt64BE(BigInt(init.currentSize), FIELD.currentSize);
  const geometry = vhdGeometry(init.currentSize);
  buffer.writeUInt16BE(geometry.cylinders, FIELD.cylinders);
  buffer.writeUInt8(geometry.heads, FIELD.heads);
  buffer.writeUInt8(geometry.sectorsPerTrack, FIELD.sectorsPerTrack);
  buffer.writeUInt32BE(VHD_DISK_TYPE[init.diskType], FIELD.diskType);
  uuidToBytes(init.uuid ?? randomUUID()).copy(buffer, FIELD.uuid);
  buffer.writeUInt32BE(vhdChecksum(buffer, FIELD.checksum), FIELD.checksum);
  return buffer;
}

function readSize(buffer: Buffer, field: number, base: number, name: string): number {
  const value = buffer.readBigUInt64BE(field);
  if (value > BigInt(VHD_MAX_VIRTUAL_SIZE)) {
    throw new VhdFormatError(
      'VHD_VIRTUAL_SIZE',
      `VHD footer ${name} is ${value} bytes, beyond the ${VHD_MAX_VIRTUAL_SIZE}-byte maximum of the format; the image is corrupt`,
      base + field,
    );
  }
  return Number(value);
}

/**
 * Decodes and checks a footer. `base` is where the footer sits in the file or stream, so errors can
 * name an absolute offset.
 */
export function decodeVhdFooter(buffer: Buffer, base = 0): VhdFooter {
  if (buffer.length < VHD_FOOTER_SIZE) {
    throw new VhdFormatError('VHD_TRUNCATED', `VHD footer is ${buffer.length} bytes, expected 512`, base);
  }
  const cookie = buffer.toString('latin1', FIELD.cookie, FIELD.cookie + 8);
  if (cookie !== VHD_FOOTER_COOKIE) {
    throw new VhdFormatError(
      'VHD_FOOTER_COOKIE',
      `VHD footer cookie is ${JSON.stringify(cookie)}, expected "conectix": this is not a VHD or it is damaged`,
      base + FIELD.cookie,
    );
  }
  const checksum = buffer.readUInt32BE(FIELD.checksum);
  const expected = vhdChecksum(buffer.subarray(0, VHD_FOOTER_SIZE), FIELD.checksum);
  if (checksum !== expected) {
    throw new VhdFormatError(
      'VHD_FOOTER_CHECKSUM',
      `VHD footer checksum is 0x${checksum.toString(16)}, computed 0x${expected.toString(16)}: the footer is damaged`,
      base + FIELD.checksum,
    );
  }
  const formatVersion = buffer.readUInt32BE(FIELD.formatVersion);
  if (formatVersion >>> 16 !== 1) {
    throw new VhdFormatError(
      'VHD_FOOTER_VERSION',
      `VHD format version 0x${formatVersion.toString(16)} is not supported (only 1.x)`,
      base + FIELD.formatVersion,
    );
  }
  const typeCode = buffer.readUInt32BE(FIELD.diskType);
  let diskType: VhdDiskType;
  switch (typeCode) {
    case VHD_DISK_TYPE.fixed:
      diskType = 'fixed';
      break;
    case VHD_DISK_TYPE.dynamic:
      diskType = 'dynamic';
      break;
    case VHD_DISK_TYPE.differencing:
      diskType = 'differencing';
      break;
    default:
      throw new VhdFormatError(
        'VHD_DISK_TYPE',
        `VHD disk type ${typeCode} is unknown (2 fixed, 3 dynamic, 4 differencing)`,
        base + FIELD.diskType,
      );
  }
  const rawDataOffset = buffer.readBigUInt64BE(FIELD.dataOffset);
  let dataOffset: number | undefined;
  if (diskType === 'fixed') {
    dataOffset = undefined;
  } else if (rawDataOffset > BigInt(VHD_MAX_VIRTUAL_SIZE)) {
    throw new VhdFormatError(
      'VHD_FOOTER_DATA_OFFSET',
      `VHD footer data offset ${rawDataOffset} is beyond any possible file size`,
      base + FIELD.dataOffset,
    );
  } else {
    dataOffset = Number(rawDataOffset);
  }
  const currentSize = readSize(buffer, FIELD.currentSize, base, 'current size');
  return {
    features: buffer.readUInt32BE(FIELD.features),
    formatVersion,
    dataOffset,
    timestamp: fromVhdTimestamp(buffer.readUInt32BE(FIELD.timestamp)),
    creatorApplication: buffer.toString('latin1', FIELD.creatorApplication, FIELD.creatorApplication + 4),
    creatorVersion: buffer.readUInt32BE(FIELD.creatorVersion),
    creatorHostOs: buffer.readUInt32BE(FIELD.creatorHostOs),
    // Some writers leave a garbage original size; it is informative only, so clamp rather than fail.
    originalSize: Number(
      buffer.readBigUInt64BE(FIELD.originalSize) > BigInt(VHD_MAX_VIRTUAL_SIZE)
        ? BigInt(currentSize)
        : buffer.readBigUInt64BE(FIELD.originalSize),
    ),
    currentSize,
    geometry: {
      cylinders: buffer.readUInt16BE(FIELD.cylinders),
      heads: buffer.readUInt8(FIELD.heads),
      sectorsPerTrack: buffer.readUInt8(FIELD.sectorsPerTrack),
    },
    diskType,
    checksum,
    uuid: bytesToUuid(buffer.subarray(FIELD.uuid, FIELD.uuid + 16)),
    savedState: buffer.readUInt8(FIELD.savedState) !== 0,
  };
}
