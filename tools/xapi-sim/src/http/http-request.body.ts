import type { IncomingMessage } from 'node:http';

/** The 1 PiB content-length the xen-api client sends for a stream of unknown length. */
export const UNKNOWN_LENGTH_MARKER = 1125899906842624;

/** Declared content-length, or undefined (chunked). */
export function declaredLength(request: IncomingMessage): number | undefined {
  const header = request.headers['content-length'];
  if (header === undefined) return undefined;
  const length = Number(header);
  return Number.isSafeInteger(length) && length >= 0 ? length : undefined;
}

/**
 * The request body as chunks. For an upload of unknown length (1 PiB declared) the client closes the
 * socket after the data instead of completing the body: that close is the end of the data.
 */
export async function* requestBody(request: IncomingMessage): AsyncGenerator<Buffer, void, undefined> {
  const unknownLength = (declaredLength(request) ?? 0) >= UNKNOWN_LENGTH_MARKER;
  try {
    for await (const chunk of request) yield chunk as Buffer;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (unknownLength && (code === 'ECONNRESET' || (error as Error).message === 'aborted')) return;
    throw error;
  }
}

export async function readText(request: IncomingMessage, limit = 64 * 1024 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new Error(`request body exceeds ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
