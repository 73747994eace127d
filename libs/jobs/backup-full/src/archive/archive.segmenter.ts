import type { Readable } from 'node:stream';
import { bodyBlocks } from '@haven/remote-sdk';
import { sha256Hex } from './archive.store';

export interface PlainSegment {
  index: number;
  data: Buffer;
  /** SHA-256 of `data`, hex. */
  sha256: string;
}

/** Cuts a stream into segments of `size` bytes (the last one shorter), each hashed once. */
export async function* cutSegments(
  source: Readable,
  size: number,
): AsyncGenerator<PlainSegment, void, undefined> {
  let index = 0;
  for await (const data of bodyBlocks(source, size)) {
    yield { index, data, sha256: sha256Hex(data) };
    index++;
  }
}
