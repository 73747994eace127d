/** Stable codes for what can be wrong in an XVA archive. */
export type XvaFormatErrorCode =
  | 'XVA_TAR_HEADER'
  | 'XVA_TAR_CHECKSUM'
  | 'XVA_TRUNCATED'
  | 'XVA_OVA_XML_MISSING'
  | 'XVA_OVA_XML_SYNTAX'
  | 'XVA_OVA_XML_CONTENT'
  | 'XVA_OVA_XML_TOO_LARGE'
  | 'XVA_UNKNOWN_ENTRY'
  | 'XVA_UNKNOWN_DISK'
  | 'XVA_CHUNK_ORDER'
  | 'XVA_CHUNK_SIZE'
  | 'XVA_CHECKSUM_MISSING'
  | 'XVA_CHECKSUM_MISMATCH'
  | 'XVA_COMPRESSION'
  | 'XVA_OPTION';

/** A malformed XVA archive (or an impossible request to write one); `entry` names the tar entry. */
export class XvaFormatError extends Error {
  override readonly name = 'XvaFormatError';

  constructor(
    readonly code: XvaFormatErrorCode,
    message: string,
    readonly entry?: string,
    readonly offset?: number,
    options?: { cause?: unknown },
  ) {
    super(
      `${message}${entry === undefined ? '' : ` (entry ${JSON.stringify(entry)})`}${offset === undefined ? '' : ` (at byte ${offset} of the tar)`}`,
      options,
    );
  }
}

export function isXvaFormatError(error: unknown, code?: XvaFormatErrorCode): error is XvaFormatError {
  return error instanceof XvaFormatError && (code === undefined || error.code === code);
}
