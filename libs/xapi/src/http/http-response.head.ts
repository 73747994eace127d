/** The status line and header fields of an HTTP/1.x response. */
export interface HttpResponseHead {
  statusCode: number;
  statusMessage: string;
  /** Field names in lower case; repeated fields joined with ", " (RFC 9110 §5.3). */
  headers: Record<string, string | undefined>;
  /** Bytes the head took, blank line included: the body starts there. */
  length: number;
}

/** A head larger than this is refused: XAPI's are a few hundred bytes. */
export const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;

const HEAD_END = Buffer.from('\r\n\r\n');

export class HttpProtocolError extends Error {
  override readonly name = 'HttpProtocolError';
}

/**
 * Parses the head at the start of `bytes`; undefined while the blank line that ends it has not
 * arrived. A malformed status line or field, or a head past MAX_RESPONSE_HEAD_BYTES, throws.
 */
export function parseHttpResponseHead(bytes: Buffer): HttpResponseHead | undefined {
  const end = bytes.indexOf(HEAD_END);
  if (end < 0) {
    if (bytes.length > MAX_RESPONSE_HEAD_BYTES) {
      throw new HttpProtocolError(
        `the response head is longer than ${MAX_RESPONSE_HEAD_BYTES} bytes (no blank line after the header fields)`,
      );
    }
    return undefined;
  }
  const lines = bytes.toString('latin1', 0, end).split('\r\n');
  const statusLine = lines[0] ?? '';
  const status = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
  if (status === null) {
    throw new HttpProtocolError(`not an HTTP/1.x status line: "${statusLine.slice(0, 80)}"`);
  }
  const headers: Record<string, string | undefined> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0 || /[\s]/.test(line.slice(0, colon))) {
      throw new HttpProtocolError(`malformed response header field: "${line.slice(0, 80)}"`);
    }
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    const previous = headers[name];
    headers[name] = previous === undefined ? value : `${previous}, ${value}`;
  }
  return {
    statusCode: Number(status.at(1)),
    statusMessage: status.at(2) ?? '',
    headers,
    length: end + HEAD_END.length,
  };
}
