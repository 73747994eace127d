import type { ServerResponse } from 'node:http';
import { Writable } from 'node:stream';

/**
 * A Writable that writes each chunk to `response` and calls `written(chunk)` once the socket has
 * taken it (the write's callback): the chunk's memory may then be reused. Back-pressure is the
 * response's own; errors of the response reach the pipeline through its abort signal.
 */
export function responseWriter(response: ServerResponse, written: (chunk: Buffer) => void): Writable {
  return new Writable({
    highWaterMark: 0,
    write(chunk: Buffer, _encoding, callback) {
      const more = response.write(chunk, (error) => {
        if (error === undefined || error === null) written(chunk);
      });
      if (more) callback();
      else response.once('drain', () => callback());
    },
    final(callback) {
      response.end(() => callback());
    },
  });
}
