import { scratchDir } from '@haven/testing';
import type { CodecName } from './codecs/chunk-codec';
import { initRepository, type Repository } from './repository';
import { CHUNK_OBJECT_HEADROOM } from './format/object.envelope';
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
 */
async function* reusingSource(
  disk: DiskPattern,
  buffers: number,
  counts: { yielded: number; released: number; sealedInFrame?: number },
  framed = false,
): AsyncGenerator<DiskBlock> {
  // Framed: each buffer has CHUNK_OBJECT_HEADROOM bytes before its data, handed over as `frame`.
  const headroom = framed ? CHUNK_OBJECT_HEADROOM : 0;
  const free: Buffer[] = Array.from({ length: buffers }, () => Buffer.alloc(headroom + BLOCK, 0xee));
  let wake: (() => void) | undefined;
  for (const index of [...disk.blocks.keys()].sort((a, b) => a - b)) {
    while (free.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    const whole = free.pop() as Buffer;
    const content = disk.blocks.get(index) as Buffer;
    content.copy(whole, headroom);
    let released = false;
    counts.yielded++;
    yield {
      index,
      data: whole.subarray(headroom, headroom + content.length),
      ...(framed ? { frame: whole } : {}),
      release: () => {
        if (released) throw new Error(`block ${index} released twice`);
        released = true;
        counts.released++;
        // A chunk sealed in the frame has its envelope's magic where the headroom was.
        if (framed && whole.toString('latin1', 0, 4) === 'HVCK')
          counts.sealedInFrame = (counts.sealedInFrame ?? 0) + 1;
        whole.fill(0xee);
        free.push(whole);
        wake?.();
      },
    };
  }
}

const variants: { codec: CodecName; encrypted: boolean }[] = [
  { codec: 'zstd', encrypted: true },
  { codec: 'none', encrypted: true },
  { codec: 'zstd', encrypted: false },
  { codec: 'none', encrypted: false },
];

describe.each(variants)('writer buffer reuse ($codec, encrypted: $encrypted)', ({ codec, encrypted }) => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let repo: Repository;
  beforeAll(async () => {
    dir = await scratchDir('haven-pool-');
    repo = await initRepository(localRemote(dir.path), {
      compression: { codec },
      ...(encrypted ? { key: 'passphrase', kdf: { N: 1024 } } : {}),
    });
  });
  afterAll(() => dir.cleanup());

  it('never lets one chunk’s bytes into another: many different blocks through pooled buffers', async () => {
    // Text, random, zero and repeated blocks, a short last block: sealed objects of every size
    // go through the same few object buffers, and the source reuses two block buffers.
    const disk = patternedDisk(`pool-${codec}-${encrypted}`, 40, 12_345);
    const counts = { yielded: 0, released: 0 };
    const writer = await repo.createRestorePointWriter(
      { vm: { uuid: 'vm', name: 'vm' } },
      { concurrency: 3 },
    );
    const entry = await writer.writeDisk(
      { key: 'xvda', virtualSize: disk.virtualSize },
      reusingSource(disk, 2, counts),
    );
    const manifest = await writer.commit();
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

  it("seals chunks in the blocks' own frames when unencrypted, releasing each only once stored", async () => {
    // Two framed buffers, scribbled over at release: a chunk sent from a frame given back too
    // early would be stored as garbage, which the read-back and verify below would see.
    const disk = patternedDisk(`pool-framed-${codec}-${encrypted}`, 30, 4_321);
    const counts = { yielded: 0, released: 0, sealedInFrame: 0 };
    const writer = await repo.createRestorePointWriter({ vm: { uuid: 'f', name: 'f' } }, { concurrency: 3 });
    const entry = await writer.writeDisk(
      { key: 'xvda', virtualSize: disk.virtualSize },
      reusingSource(disk, 2, counts, true),
    );
    const manifest = await writer.commit();
    expect(counts.released).toBe(disk.blocks.size);
    // Unencrypted: every uploaded chunk was sealed in its frame; encrypted: none (a cipher would
    // write over bytes it still has to read).
    expect(counts.sealedInFrame).toBe(encrypted ? 0 : entry.uploadedChunks);
    expect(entry.uploadedChunks).toBeGreaterThan(5);
    const restored = await collect(
      (await repo.openRestorePoint(manifest.id)).disk('xvda').createReadStream(),
    );
    expect(restored.equals(rawImage(disk))).toBe(true);
    expect((await repo.verify()).ok).toBe(true);
  });

  it('gives the same chunks as a source that hands over fresh buffers', async () => {
    const disk = patternedDisk(`pool-fresh-${codec}-${encrypted}`, 12);
    const pooled = await repo.createRestorePointWriter({ vm: { uuid: 'a', name: 'a' } }, { concurrency: 2 });
    const counts = { yielded: 0, released: 0 };
    await pooled.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, reusingSource(disk, 1, counts));
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
});
