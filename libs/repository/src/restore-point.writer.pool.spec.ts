import { scratchDir } from '@haven/testing';
import { CHUNK_ID_THREAD_ENV, ChunkIdThread } from './chunk-id.thread';
import type { CodecName } from './codecs/chunk-codec';
import { initRepository, type Repository } from './repository';
import type { DiskBlock } from './restore-point.writer';
import {
  BLOCK,
  collect,
  localRemote,
  patternedDisk,
  rawImage,
  type DiskPattern,
} from './testing/disk-pattern.fixture';

/**
 * A source like a dd loop: `buffers` buffers, each read into again as soon as the writer
 * releases it, and scribbled over at release so a writer still reading it would store garbage.
 * `shared`: the buffers are in shared memory, as an export reader's (the chunk id thread reads
 * them in place, and must be done with a block before the writer releases it).
 */
async function* reusingSource(
  disk: DiskPattern,
  buffers: number,
  counts: { yielded: number; released: number },
  shared = false,
): AsyncGenerator<DiskBlock> {
  const free: Buffer[] = Array.from({ length: buffers }, () =>
    shared ? Buffer.from(new SharedArrayBuffer(BLOCK)) : Buffer.alloc(BLOCK),
  );
  let wake: (() => void) | undefined;
  for (const index of [...disk.blocks.keys()].sort((a, b) => a - b)) {
    while (free.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    const buffer = free.pop() as Buffer;
    const content = disk.blocks.get(index) as Buffer;
    content.copy(buffer);
    let released = false;
    counts.yielded++;
    yield {
      index,
      data: buffer.subarray(0, content.length),
      release: () => {
        if (released) throw new Error(`block ${index} released twice`);
        released = true;
        counts.released++;
        buffer.fill(0xee);
        free.push(buffer);
        wake?.();
      },
    };
  }
}

const variants: { codec: CodecName; encrypted: boolean; shared: boolean }[] = [
  { codec: 'zstd', encrypted: true, shared: false },
  { codec: 'none', encrypted: true, shared: false },
  { codec: 'zstd', encrypted: false, shared: false },
  { codec: 'none', encrypted: false, shared: false },
  // Blocks in shared memory: ids computed on the chunk id thread (HMAC and SHA-256).
  { codec: 'zstd', encrypted: true, shared: true },
  { codec: 'none', encrypted: false, shared: true },
];

describe.each(variants)(
  'writer buffer reuse ($codec, encrypted: $encrypted, shared: $shared)',
  ({ codec, encrypted, shared }) => {
    let dir: { path: string; cleanup: () => Promise<void> };
    let repo: Repository;
    const threadSetting = process.env[CHUNK_ID_THREAD_ENV];
    beforeAll(async () => {
      // Whatever the host's cores: the thread is what the shared variants test.
      if (shared) process.env[CHUNK_ID_THREAD_ENV] = 'on';
      dir = await scratchDir('haven-pool-');
      repo = await initRepository(localRemote(dir.path), {
        compression: { codec },
        ...(encrypted ? { key: 'passphrase', kdf: { N: 1024 } } : {}),
      });
    });
    afterAll(async () => {
      if (threadSetting === undefined) Reflect.deleteProperty(process.env, CHUNK_ID_THREAD_ENV);
      else process.env[CHUNK_ID_THREAD_ENV] = threadSetting;
      await dir.cleanup();
    });

    it('never lets one chunk’s bytes into another: many different blocks through pooled buffers', async () => {
      // Text, random, zero and repeated blocks, a short last block: sealed objects of every size
      // go through the same few object buffers, and the source reuses two block buffers.
      const disk = patternedDisk(`pool-${codec}-${encrypted}-${shared}`, 40, 12_345);
      const counts = { yielded: 0, released: 0 };
      const onThread = jest.spyOn(ChunkIdThread.prototype, 'idOf');
      const writer = await repo.createRestorePointWriter(
        { vm: { uuid: 'vm', name: 'vm' } },
        { concurrency: 3 },
      );
      const entry = await writer.writeDisk(
        { key: 'xvda', virtualSize: disk.virtualSize },
        reusingSource(disk, 2, counts, shared),
      );
      const manifest = await writer.commit();
      // Every block but the zero ones was named on the thread, when in shared memory.
      expect(onThread).toHaveBeenCalledTimes(shared ? entry.uploadedChunks + entry.reusedChunks : 0);
      onThread.mockRestore();
      expect(counts.yielded).toBe(disk.blocks.size);
      expect(counts.released).toBe(disk.blocks.size);
      expect(entry.uploadedChunks).toBeGreaterThan(10);
      const restored = await collect(
        (await repo.openRestorePoint(manifest.id)).disk('xvda').createReadStream(),
      );
      expect(restored.equals(rawImage(disk))).toBe(true);
      const report = await repo.verify();
      expect(report.ok).toBe(true);
    });

    it('gives the same chunks as a source that hands over fresh buffers', async () => {
      const disk = patternedDisk(`pool-fresh-${codec}-${encrypted}-${shared}`, 12);
      const pooled = await repo.createRestorePointWriter(
        { vm: { uuid: 'a', name: 'a' } },
        { concurrency: 2 },
      );
      const counts = { yielded: 0, released: 0 };
      await pooled.writeDisk(
        { key: 'xvda', virtualSize: disk.virtualSize },
        reusingSource(disk, 1, counts, shared),
      );
      const first = await pooled.commit();
      // Second restore point of the same disk, fresh buffers: every chunk is found, none uploaded.
      const fresh = await repo.createRestorePointWriter({ vm: { uuid: 'b', name: 'b' } });
      const entry = await fresh.writeDisk(
        { key: 'xvda', virtualSize: disk.virtualSize },
        [...disk.blocks].map(([index, data]) => ({ index, data: Buffer.from(data) })),
      );
      await fresh.commit();
      expect(entry.uploadedChunks).toBe(0);
      const index = await repo.readDiskIndex(first, 'xvda');
      expect(index.allocatedCount).toBe(entry.allocatedBlocks);
    });
  },
);
