/** Stable codes for everything that can be wrong in a VHD; each names the field that failed. */
export type VhdFormatErrorCode =
  | 'VHD_FOOTER_COOKIE'
  | 'VHD_FOOTER_CHECKSUM'
  | 'VHD_FOOTER_VERSION'
  | 'VHD_FOOTER_DATA_OFFSET'
  | 'VHD_FOOTER_MISMATCH'
  | 'VHD_DISK_TYPE'
  | 'VHD_VIRTUAL_SIZE'
  | 'VHD_HEADER_COOKIE'
  | 'VHD_HEADER_CHECKSUM'
  | 'VHD_HEADER_VERSION'
  | 'VHD_BLOCK_SIZE'
  | 'VHD_TABLE_OFFSET'
  | 'VHD_MAX_TABLE_ENTRIES'
  | 'VHD_BAT_ENTRY'
  | 'VHD_BLOCK_OVERLAP'
  | 'VHD_BLOCK_ORDER'
  | 'VHD_BLOCK_DATA'
  | 'VHD_PARENT_LOCATOR'
  | 'VHD_TRAILING_DATA'
  | 'VHD_TRUNCATED'
  | 'VHD_FILE_SIZE'
  | 'VHD_CHAIN_PARENT'
  | 'VHD_RANGE'
  | 'VHD_OPTION';

/**
 * A VHD that does not follow the format (or a request that cannot be honoured on it). `offset` is
 * the byte offset in the VHD file or stream where the bad field sits, when there is one.
 */
export class VhdFormatError extends Error {
  override readonly name = 'VhdFormatError';

  constructor(
    readonly code: VhdFormatErrorCode,
    message: string,
    readonly offset?: number,
    options?: { cause?: unknown },
  ) {
    super(offset === undefined ? message : `${message} (at byte offset ${offset})`, options);
  }
}

export function isVhdFormatError(error: unknown, code?: VhdFormatErrorCode): error is VhdFormatError {
  return error instanceof VhdFormatError && (code === undefined || error.code === code);
}
