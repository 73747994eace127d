import type { Readable } from 'node:stream';

/**
 * A stream whose chunks are lent: views of memory its producer fills again once each chunk is
 * given back (an HTTP download's read slabs). A consumer that knows this copies what it keeps and
 * gives every chunk back once, when it has read all of it. One that does not simply never gives
 * them back: the producer then allocates new memory and the garbage collector frees the old, as
 * with any stream.
 */
export interface ChunkLender {
  /** `chunk` (a chunk the stream emitted, or the unread tail of one) is no longer read. */
  giveBack(chunk: Buffer): void;
}

const lenders = new WeakMap<Readable, ChunkLender>();

/** Marks `stream` as emitting chunks lent by `lender`. */
export function lendChunks(stream: Readable, lender: ChunkLender): void {
  lenders.set(stream, lender);
}

/** Who lends the chunks `stream` emits, if they are lent. */
export function chunkLenderOf(stream: Readable): ChunkLender | undefined {
  return lenders.get(stream);
}
