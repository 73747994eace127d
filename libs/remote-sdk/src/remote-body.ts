import type { Readable } from 'node:stream';
import { DriverError } from './remote.errors';

/** Cuts a put body into blocks of `size` bytes (the last may be shorter), copying only stream input. */
export async function* bodyBlocks(body: Buffer | Readable, size: number): AsyncGenerator<Buffer> {
  if (Buffer.isBuffer(body)) {
    for (let offset = 0; offset < body.length; offset += size) yield body.subarray(offset, offset + size);
    return;
  }
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of body) {
    let data: Buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    while (data.length > 0) {
      const take = Math.min(size - pendingBytes, data.length);
      pending.push(data.subarray(0, take));
      pendingBytes += take;
      data = data.subarray(take);
      if (pendingBytes === size) {
        yield Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
      }
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes);
}

/** Byte order of UTF-8 keys: the order S3 lists in, which every driver's list() follows. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export interface PipelinedReadOptions {
  /** Object key, for the error when it shrinks while being read. */
  key: string;
  /** Byte range, start inclusive, end exclusive. */
  start: number;
  end: number;
  /** Largest piece asked of the server at once. */
  pieceSize: number;
  /** Pieces in flight at the same time. */
  concurrency: number;
  /** Reads at `offset`; may answer fewer bytes than `length` (servers cap reads), none at the end. */
  readSome(offset: number, length: number): Promise<Buffer>;
}

/**
 * Bytes `[start, end)` of an object as consecutive pieces, with up to `concurrency` reads in flight
 * and yielded in order (file-protocol drivers: NFS, SMB). A read that comes back empty before the
 * end means the object changed while being read: TRANSIENT, so the caller may read it again.
 */
export async function* pipelinedRead(options: PipelinedReadOptions): AsyncGenerator<Buffer> {
  const { key, start, end, pieceSize, concurrency, readSome } = options;
  const readPiece = async (offset: number, length: number): Promise<Buffer> => {
    const parts: Buffer[] = [];
    let done = 0;
    while (done < length) {
      const data = await readSome(offset + done, length - done);
      if (data.length === 0) break;
      parts.push(data);
      done += data.length;
    }
    if (done < length)
      throw new DriverError(
        'TRANSIENT',
        `"${key}" ended at ${offset + done} while ${end} bytes were expected (it changed while being read)`,
      );
    return parts.length === 1 && parts[0] ? parts[0] : Buffer.concat(parts);
  };
  const reads: Promise<Buffer>[] = [];
  let next = start;
  const fill = (): void => {
    while (reads.length < concurrency && next < end) {
      const length = Math.min(pieceSize, end - next);
      const read = readPiece(next, length);
      read.catch(() => undefined); // observed when its turn comes
      reads.push(read);
      next += length;
    }
  };
  try {
    fill();
    for (;;) {
      const read = reads.shift();
      if (read === undefined) return;
      const data = await read;
      fill();
      yield data;
    }
  } finally {
    // A consumer that stops early (or a failed piece) leaves reads in flight: let them settle.
    await Promise.allSettled(reads);
  }
}
