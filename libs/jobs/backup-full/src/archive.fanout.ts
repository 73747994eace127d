import { BlockFanout } from '@haven/job-backup-incremental';
import { BufferPool } from '@haven/repository';
import {
  cutSegments,
  type ArchiveLocation,
  type ArchiveSegment,
  type ArchiveStore,
  type PlainSegment,
} from './archive';

/**
 * Segments one VM's export holds at once in the fan-out: the one the slowest remote is storing and
 * the one being cut (BlockFanout reads one item ahead). Each encrypted remote adds one sealed copy.
 */
export const FANOUT_SEGMENTS = 2;

/** One remote's archive being written: its segments are appended as they are stored. */
export interface SegmentDestination {
  archives: ArchiveStore;
  location: ArchiveLocation;
  segments: ArchiveSegment[];
}

/**
 * Cuts `source` into segments of `segmentSize` and stores each on every destination, reading the
 * source once (the slowest remote sets the pace). Segments are cut into FANOUT_SEGMENTS reused
 * buffers, each given back once every remote has stored it: the working set is bounded by the
 * segment size, not the VM. Settled, not raced: on a failure every remote has stopped before this
 * throws (the caller removes the folders). Returns the bytes read.
 */
export async function storeSegmentsOnAll(
  source: AsyncIterable<Buffer | Uint8Array | string>,
  destinations: readonly SegmentDestination[],
  options: {
    segmentSize: number;
    signal?: AbortSignal;
    onProgress?: (bytes: number) => void;
    /** The pool segments are cut into (tests pass one to count what is lent). */
    buffers?: BufferPool;
  },
): Promise<number> {
  const buffers = options.buffers ?? new BufferPool(options.segmentSize, FANOUT_SEGMENTS);
  let bytes = 0;
  async function* counted(): AsyncGenerator<PlainSegment, void, undefined> {
    for await (const segment of cutSegments(source, options.segmentSize, buffers)) {
      bytes += segment.data.length;
      options.onProgress?.(bytes);
      yield segment;
    }
  }
  const fanout = new BlockFanout(counted(), destinations.length);
  try {
    const settled = await Promise.allSettled(
      destinations.map(async (destination, index) => {
        for await (const segment of fanout.consumer(index)) {
          destination.segments.push(
            await destination.archives.writeSegment(
              destination.location,
              segment.index,
              segment.data,
              segment.sha256,
              options.signal,
            ),
          );
          // Not on failure: a put that failed may still be reading it (the buffer is not reused).
          segment.release?.();
        }
      }),
    );
    for (const outcome of settled) if (outcome.status === 'rejected') throw outcome.reason;
  } finally {
    await fanout.close();
  }
  return bytes;
}
