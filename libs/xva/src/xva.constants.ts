/** XAPI splits every disk of an XVA into 1 MiB chunks. */
export const XVA_CHUNK_SIZE = 1024 * 1024;
/** ova.xml larger than this is refused rather than buffered (real ones are kilobytes to a few MiB). */
export const XVA_MAX_OVA_XML_SIZE = 32 * 1024 * 1024;
/** The export format version XAPI has written since XenServer 4.1 (inline checksums). */
export const XVA_EXPORT_VERSION = '2';
/** Current XAPI writes XXH64 checksums; releases before 2022 wrote SHA-1 in `.checksum` entries. */
export type XvaChecksumKind = 'xxhash' | 'sha1';
export const XVA_CHECKSUM_SUFFIX: Record<XvaChecksumKind, string> = { xxhash: '.xxhash', sha1: '.checksum' };
export type XvaCompression = 'none' | 'gzip' | 'zstd';

/** Tar entry name of chunk `index` of the disk whose ova.xml id is `diskId` (e.g. `Ref:3/00000012`). */
export function xvaChunkName(diskId: string, index: number): string {
  return `${diskId}/${index.toString().padStart(8, '0')}`;
}

export function xvaChunkCount(virtualSize: number): number {
  return Math.ceil(virtualSize / XVA_CHUNK_SIZE);
}
