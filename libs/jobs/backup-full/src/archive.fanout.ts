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
 * Segments one VM's export holds at once in the fan-out to remotes that store one segment at a
 * time: the one the slowest remote is storing and the one being cut (BlockFanout reads one item
 * ahead). A remote that keeps several writes in flight (RemoteStore.writesInFlight: object stores)
 * holds that many; each encrypted remote adds one sealed copy per write in flight.
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
 * source once (the slowest remote sets the pace). Each destination keeps up to its archive store's
 * writesInFlight writes going (an object store a round trip away would otherwise wait for
 * each one: docs/benchmarks/jobs.md, "backup.full to a remote a round trip away"); its segments
 * are recorded in order whatever order the writes end in. Segments are cut into reused buffers,
 * each given back once every remote has stored it: the working set is bounded by the segment size
 * and the writes in flight, not the VM. Settled, not raced: on a failure every remote has stopped
 * and every write in flight has ended before this throws (the caller removes the folders).
 * Returns the bytes read.
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
  const inFlight = Math.max(1, ...destinations.map((destination) => destination.archives.writesInFlight));
  const buffers = options.buffers ?? new BufferPool(options.segmentSize, FANOUT_SEGMENTS - 1 + inFlight);
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
      destinations.map((destination, index) =>
        storeOnOne(destination, fanout.consumer(index), destination.archives.writesInFlight, options.signal),
      ),
    );
    for (const outcome of settled) if (outcome.status === 'rejected') throw outcome.reason;
  } finally {
    await fanout.close();
  }
  return bytes;
}

/**
 * One destination's side of the fan-out: up to `inFlight` segment writes at once. A failed write
 * stops the intake; the writes still going are waited for before any failure (a write's, or the
 * source's) is thrown.
 */
async function storeOnOne(
  destination: SegmentDestination,
  segments: AsyncIterable<PlainSegment>,
  inFlight: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const first = destination.segments.length;
  const writes = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  try {
    for await (const segment of segments) {
      const write = destination.archives
        .writeSegment(destination.location, segment.index, segment.data, segment.sha256, signal)
        .then(
          (stored) => {
            destination.segments[first + segment.index] = stored;
            // Not on failure: a put that failed may still be reading it (the buffer is not reused).
            segment.release?.();
          },
          (error: unknown) => {
            failure ??= { error };
          },
        )
        .finally(() => writes.delete(write));
      writes.add(write);
      while (writes.size >= inFlight && failure === undefined) await Promise.race(writes);
      if (failure !== undefined) break;
    }
  } finally {
    // Also when the source failed: no write may land after the caller has cleaned up.
    await Promise.all(writes);
  }
  if (failure !== undefined) throw failure.error;
}
