import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import localRemote from '@haven/remote-local';
import type { RemoteStore } from '@haven/remote-sdk';
import { BufferPool, initRepository } from '@haven/repository';
import { countInFlight, scratchDir, type InFlightCount } from '@haven/testing';
import { ArchiveStore, newArchiveId } from './archive';
import { FANOUT_SEGMENTS, storeSegmentsOnAll, type SegmentDestination } from './archive.fanout';

const KiB = 1024;
const SEGMENT = 64 * KiB;
const VM = '4f2c1a7e-9b1d-4c55-8e0a-2d9f6b3c7a10';

/** A pool that remembers the most buffers it had lent at once and every buffer it handed out. */
class CountingPool extends BufferPool {
  peak = 0;
  readonly handedOut = new Set<ArrayBufferLike>();

  override acquire(): Buffer {
    const buffer = super.acquire();
    this.peak = Math.max(this.peak, this.inUse);
    this.handedOut.add(buffer.buffer);
    return buffer;
  }
}

/** Lets other work run between a remote's puts: this remote is the slowest, and sets the pace. */
function slowed(store: RemoteStore, turns: number): RemoteStore {
  const put = store.put.bind(store);
  store.put = async (...args: Parameters<RemoteStore['put']>) => {
    for (let turn = 0; turn < turns; turn++) await new Promise((resolve) => setImmediate(resolve));
    return put(...args);
  };
  return store;
}

/** Records the memory each put of a segment was given (to count the distinct sealed buffers). */
function recorded(store: RemoteStore, seen: Set<ArrayBufferLike>): RemoteStore {
  const put = store.put.bind(store);
  store.put = async (key, body, options) => {
    if (Buffer.isBuffer(body) && key.includes('/segment-')) seen.add(body.buffer);
    return put(key, body, options);
  };
  return store;
}

/**
 * A remote that asks for `inFlight` writes at once, whose segment puts end out of order (every
 * fourth one is slow), counting the puts running at once.
 */
function pipelined(store: RemoteStore, inFlight: number): RemoteStore & { puts: InFlightCount } {
  Object.defineProperty(store, 'writesInFlight', { value: inFlight });
  const put = store.put.bind(store);
  const segmentPuts = countInFlight(put, (key: string) => (Number(key.slice(-6)) % 4 === 0 ? 40 : 1));
  store.put = (key, body, options) =>
    key.includes('/segment-') ? segmentPuts.call(key, body, options) : put(key, body, options);
  return Object.assign(store, { puts: segmentPuts.count });
}

/** What a destination holds, read back segment by segment in the order its manifest lists them. */
async function storedExport(destination: SegmentDestination): Promise<Buffer> {
  const manifest = {
    id: destination.location.archiveId,
    vm: { uuid: VM },
    segments: destination.segments,
  } as Parameters<ArchiveStore['readSegment']>[0];
  const read: Buffer[] = [];
  for (let index = 0; index < destination.segments.length; index++)
    read.push(Buffer.from(await destination.archives.readSegment(manifest, index)));
  return Buffer.concat(read);
}

describe('storing one export on every remote (fan-out of segments)', () => {
  let folders: { path: string; cleanup: () => Promise<void> }[] = [];
  let stores: RemoteStore[] = [];

  async function remote(name: string): Promise<RemoteStore> {
    const folder = await scratchDir(`haven-archive-fanout-${name}-`);
    folders.push(folder);
    const store = await localRemote.create({ path: folder.path }, { name });
    stores.push(store);
    return store;
  }

  afterEach(async () => {
    for (const store of stores) await store.close();
    for (const folder of folders) await folder.cleanup();
    stores = [];
    folders = [];
  });

  it('holds at most two plain segments and one sealed copy per encrypted remote, whatever the length', async () => {
    const sealedSeen = new Set<ArrayBufferLike>();
    const sealedStore = recorded(slowed(await remote('sealed'), 20), sealedSeen);
    const plainStore = await remote('plain');
    const sealed = ArchiveStore.forRepository(
      await initRepository(sealedStore, { key: 'fan-out passphrase', kdf: { N: 1024, r: 8, p: 1 } }),
    );
    const plain = ArchiveStore.forRepository(await initRepository(plainStore, {}));
    const destinations: SegmentDestination[] = [sealed, plain].map((archives) => ({
      archives,
      location: { vmUuid: VM, archiveId: newArchiveId('fan-out task') },
      segments: [],
    }));
    // 40 segments and a short one, in pieces that do not line up with them.
    const xva = randomBytes(40 * SEGMENT + 1000);
    const pieces: Buffer[] = [];
    for (let start = 0; start < xva.length; start += 10_000) pieces.push(xva.subarray(start, start + 10_000));
    const buffers = new CountingPool(SEGMENT, FANOUT_SEGMENTS);

    const bytes = await storeSegmentsOnAll(Readable.from(pieces), destinations, {
      segmentSize: SEGMENT,
      buffers,
    });

    expect(bytes).toBe(xva.length);
    // The bound: the slowest remote's segment and the one being cut, not one per segment.
    expect(buffers.peak).toBeLessThanOrEqual(FANOUT_SEGMENTS);
    expect(buffers.handedOut.size).toBeLessThanOrEqual(FANOUT_SEGMENTS);
    expect(buffers.inUse).toBe(0);
    // One sealed buffer for the 41 segments of the encrypted remote.
    expect(sealedSeen.size).toBe(1);
    expect(sealed.sealBuffersInUse).toBe(0);
    // And what was stored is the export, on both remotes.
    for (const destination of destinations) {
      expect(destination.segments).toHaveLength(41);
      expect((await storedExport(destination)).equals(xva)).toBe(true);
    }
  });

  it("keeps a remote's writesInFlight segment writes going and records the segments in order", async () => {
    const sealedSeen = new Set<ArrayBufferLike>();
    const objectStore = pipelined(recorded(await remote('object-store'), sealedSeen), 4);
    const sealed = ArchiveStore.forRepository(
      await initRepository(objectStore, { key: 'pipelined passphrase', kdf: { N: 1024, r: 8, p: 1 } }),
    );
    // Alone: with other remotes, the slowest one sets the pace (it is the one that needs the writes in flight).
    const destination: SegmentDestination = {
      archives: sealed,
      location: { vmUuid: VM, archiveId: newArchiveId('pipelined task') },
      segments: [],
    };
    const xva = randomBytes(30 * SEGMENT + 123);
    const buffers = new CountingPool(SEGMENT, FANOUT_SEGMENTS - 1 + 4);

    await storeSegmentsOnAll(Readable.from([xva]), [destination], { segmentSize: SEGMENT, buffers });

    // Four at once on the object store, never more.
    expect(objectStore.puts.peak).toBe(4);
    expect(buffers.peak).toBeLessThanOrEqual(FANOUT_SEGMENTS - 1 + 4);
    expect(buffers.inUse).toBe(0);
    // One sealed buffer per write in flight, reused.
    expect(sealedSeen.size).toBeLessThanOrEqual(4);
    expect(sealed.sealBuffersInUse).toBe(0);
    expect(destination.segments).toHaveLength(31);
    expect((await storedExport(destination)).equals(xva)).toBe(true);
  });

  it('fails after the writes still in flight have ended when one of several fails', async () => {
    const objectStore = pipelined(await remote('failing-object-store'), 4);
    const put = objectStore.put.bind(objectStore);
    let putsAfterFailure = 0;
    let failed = false;
    objectStore.put = async (key, body, options) => {
      if (failed) putsAfterFailure++;
      if (key.endsWith('segment-000005')) {
        failed = true;
        throw new Error('bucket quota exceeded');
      }
      return put(key, body, options);
    };
    const destination: SegmentDestination = {
      archives: ArchiveStore.forRepository(await initRepository(objectStore, {})),
      location: { vmUuid: VM, archiveId: newArchiveId('failing pipelined task') },
      segments: [],
    };
    await expect(
      storeSegmentsOnAll(Readable.from([randomBytes(20 * SEGMENT)]), [destination], { segmentSize: SEGMENT }),
    ).rejects.toThrow('bucket quota exceeded');
    // Nothing was still writing when the failure came out, and no new segment was started after it
    // beyond those already asked for (at most the other writes in flight).
    expect(objectStore.puts.running).toBe(0);
    expect(putsAfterFailure).toBeLessThanOrEqual(3);
  });

  it('waits for the writes in flight before an export that breaks off comes out as a failure', async () => {
    const objectStore = pipelined(await remote('cut-object-store'), 4);
    const destination: SegmentDestination = {
      archives: ArchiveStore.forRepository(await initRepository(objectStore, {})),
      location: { vmUuid: VM, archiveId: newArchiveId('cut export task') },
      segments: [],
    };
    async function* cutShort(): AsyncGenerator<Buffer> {
      for (let piece = 0; piece < 6; piece++) yield randomBytes(SEGMENT);
      await Promise.resolve();
      throw new Error('export cut after 6 segments');
    }
    const failed = storeSegmentsOnAll(cutShort(), [destination], { segmentSize: SEGMENT });
    await expect(failed).rejects.toThrow('export cut after 6 segments');
    // Four were still being written when the export broke off: they ended first.
    expect(objectStore.puts.peak).toBe(4);
    expect(objectStore.puts.running).toBe(0);
  });

  it("fails when one remote fails, after the other stopped, without reusing the failed put's buffer", async () => {
    const failing = await remote('failing');
    const put = failing.put.bind(failing);
    failing.put = async (key, body, options) => {
      if (key.endsWith('segment-000003')) throw new Error('disk full on the failing remote');
      return put(key, body, options);
    };
    const healthy = await remote('healthy');
    const destinations: SegmentDestination[] = [];
    for (const store of [failing, healthy])
      destinations.push({
        archives: ArchiveStore.forRepository(await initRepository(store, {})),
        location: { vmUuid: VM, archiveId: newArchiveId('failing task') },
        segments: [],
      });
    const buffers = new CountingPool(SEGMENT, FANOUT_SEGMENTS);
    await expect(
      storeSegmentsOnAll(Readable.from([randomBytes(10 * SEGMENT)]), destinations, {
        segmentSize: SEGMENT,
        buffers,
      }),
    ).rejects.toThrow('disk full on the failing remote');
    expect(destinations[0]?.segments).toHaveLength(3);
    // Segment 3's buffer stays lent for good (the failed put may still read it); no other is.
    expect(buffers.inUse).toBe(1);
    expect(buffers.peak).toBeLessThanOrEqual(FANOUT_SEGMENTS);
  });
});
