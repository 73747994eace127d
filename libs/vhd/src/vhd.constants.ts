/** Size of a data block in every VHD Haven writes or accepts (the Microsoft and XAPI default). */
export const VHD_BLOCK_SIZE = 2 * 1024 * 1024;
export const VHD_SECTOR_SIZE = 512;
export const VHD_FOOTER_SIZE = 512;
export const VHD_HEADER_SIZE = 1024;
/** One bit per 512-byte sector of a 2 MiB block: 4096 bits = 512 bytes, already sector aligned. */
export const VHD_SECTOR_BITMAP_SIZE = VHD_BLOCK_SIZE / VHD_SECTOR_SIZE / 8;
export const VHD_SECTORS_PER_BLOCK = VHD_BLOCK_SIZE / VHD_SECTOR_SIZE;
/** Bytes a block occupies in the file: its sector bitmap then its data. */
export const VHD_BLOCK_FOOTPRINT = VHD_SECTOR_BITMAP_SIZE + VHD_BLOCK_SIZE;
/**
 * BAT entries are 32-bit sector numbers, so no VHD file can exceed 2 TiB; Haven caps the virtual
 * size at the same figure (XAPI's own limit is 2040 GiB). Anything larger in a header is corrupt.
 */
export const VHD_MAX_VIRTUAL_SIZE = 2 * 1024 ** 4;
export const VHD_MAX_TABLE_ENTRIES = VHD_MAX_VIRTUAL_SIZE / VHD_BLOCK_SIZE;
export const VHD_UNALLOCATED = 0xffffffff;

export const VHD_FOOTER_COOKIE = 'conectix';
export const VHD_HEADER_COOKIE = 'cxsparse';
export const VHD_FORMAT_VERSION = 0x00010000;
export const VHD_HEADER_VERSION = 0x00010000;
/** Reserved feature bit that the specification requires to be set. */
export const VHD_FEATURES_RESERVED = 0x00000002;
/**
 * XenServer's creator application. qemu (and other readers) take the exact size from the footer for
 * this creator instead of rounding down to the CHS geometry, which is what we want.
 */
export const VHD_CREATOR_APPLICATION = 'tap\0';
export const VHD_CREATOR_VERSION = 0x00010003;
/** "Wi2k": the host OS code XenServer writes. */
export const VHD_CREATOR_HOST_OS = 0x5769326b;

/** Seconds between the Unix epoch and the VHD epoch (2000-01-01T00:00:00Z). */
export const VHD_EPOCH_OFFSET_SECONDS = 946_684_800;

export const VHD_DISK_TYPE = { fixed: 2, dynamic: 3, differencing: 4 } as const;
export type VhdDiskType = 'fixed' | 'dynamic' | 'differencing';
