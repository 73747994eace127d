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
 * The request body as chunks, with bounded read-ahead (`highWaterMark`, then the socket is paused).
 *
 * For an upload of unknown length (1 PiB declared) the client closes its socket after the data
 * instead of completing the body; Node then destroys the request, dropping whatever it still buffers.
 * So chunks are taken out of the request as soon as they arrive (flowing mode) into this reader's own
 * queue, and that close is turned into the end of the data.
 */
export async function* requestBody(
  request: IncomingMessage,
  highWaterMark = 8 * 1024 * 1024,
): AsyncGenerator<Buffer, void, undefined> {
  const unknownLength = (declaredLength(request) ?? 0) >= UNKNOWN_LENGTH_MARKER;
  const queue: Buffer[] = [];
  let queued = 0;
  // Set from event handlers: an object so that the reader loop re-reads them after each wait.
  const state: { ended: boolean; failure: Error | undefined } = { ended: false, failure: undefined };
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  const cutShort = (error: Error): void => {
    if (unknownLength) state.ended = true;
    else state.failure ??= error;
    notify();
  };
  const onData = (chunk: Buffer): void => {
    queue.push(chunk);
    queued += chunk.length;
    if (queued >= highWaterMark) request.pause();
    notify();
  };
  const onEnd = (): void => {
    state.ended = true;
    notify();
  };
  const onError = (error: Error): void => cutShort(error);
  const onClose = (): void => {
    if (!request.complete) cutShort(new Error('the client closed the connection before the end of the body'));
    else onEnd();
  };
  // EOF from the client: Node has parsed every byte into the request but will destroy it (and its
  // buffer) when the socket closes, so take the buffered bytes now.
  const onSocketEnd = (): void => {
    for (
      let chunk = request.read() as Buffer | null;
      chunk !== null;
      chunk = request.read() as Buffer | null
    ) {
      queue.push(chunk);
      queued += chunk.length;
    }
    if (unknownLength) state.ended = true;
    notify();
  };
  request.on('data', onData);
  request.on('end', onEnd);
  request.on('error', onError);
  request.on('close', onClose);
  request.socket.once('end', onSocketEnd);
  try {
    for (;;) {
      const chunk = queue.shift();
      if (chunk !== undefined) {
        queued -= chunk.length;
        if (queued < highWaterMark && request.isPaused()) request.resume();
        yield chunk;
        continue;
      }
      if (state.failure !== undefined) throw state.failure;
      if (state.ended) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    request.off('data', onData);
    request.off('end', onEnd);
    request.off('close', onClose);
    request.socket.off('end', onSocketEnd);
    // Keep an error listener: a late reset must not become an uncaught exception.
    request.off('error', onError);
    request.on('error', () => undefined);
    if (!state.ended) request.resume();
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
