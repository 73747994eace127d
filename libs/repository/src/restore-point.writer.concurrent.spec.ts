import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { scratchDir } from '@haven/testing';
import { chunkKey } from './format/repository.layout';
import { initRepository, type Repository } from './repository';
import type { DiskBlock } from './restore-point.writer';
import {
  blocksOf,
  collect,
  localRemote,
  patternedDisk,
  rawImage,
  type DiskPattern,
} from './testing/disk-pattern.fixture';

/** The disk's blocks, handing control back to the event loop between them (so disks interleave). */
async function* slowly(disk: DiskPattern, trace: string[], name: string): AsyncGenerator<DiskBlock> {
  for (const block of blocksOf(disk)) {
    await new Promise((resolve) => setImmediate(resolve));
    trace.push(name);
    yield block;
  }
}

describe('restore point writer: disks at once, damaged chunks rewritten', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let repo: Repository;
  beforeEach(async () => {
    dir = await scratchDir('haven-writer-concurrent-');
    repo = await initRepository(localRemote(dir.path));
  });
  afterEach(() => dir.cleanup());

  it('writes several disks at once; the manifest lists them in the order they were started', async () => {
    const a = patternedDisk('concurrent-a', 10);
    const b = patternedDisk('concurrent-b', 7, 4096);
    const writer = await repo.createRestorePointWriter({ vm: { uuid: 'vm', name: 'vm' } });
    const trace: string[] = [];
    const writes = Promise.all([
      writer.writeDisk({ key: 'xvda', virtualSize: a.virtualSize }, slowly(a, trace, 'a')),
      writer.writeDisk({ key: 'xvdb', virtualSize: b.virtualSize }, slowly(b, trace, 'b')),
    ]);
    // Committing while disks are being written is refused, naming why.
    await expect(writer.commit()).rejects.toMatchObject({
      code: 'WRITER_CLOSED',
      message: expect.stringMatching(/still writing 2 disk/),
    });
    // The same key twice is refused even while the first is in progress.
    await expect(writer.writeDisk({ key: 'xvda', virtualSize: a.virtualSize }, [])).rejects.toThrow(
      /already written/,
    );
    await writes;
    // The disks really were read in turns, not one after the other.
    expect(trace.join('')).toMatch(/ab|ba/);
    expect(trace.indexOf('b')).toBeLessThan(trace.lastIndexOf('a'));
    const manifest = await writer.commit();
    expect(manifest.disks.map((disk) => disk.key)).toEqual(['xvda', 'xvdb']);
    expect(new Set(manifest.disks.map((disk) => disk.index)).size).toBe(2);
    const reader = await repo.openRestorePoint(manifest.id);
    expect((await collect(reader.disk('xvda').createReadStream())).equals(rawImage(a))).toBe(true);
    expect((await collect(reader.disk('xvdb').createReadStream())).equals(rawImage(b))).toBe(true);
    expect((await repo.verify()).ok).toBe(true);
  });

  it('a disk that fails fails the writer, whatever the other disks do', async () => {
    const a = patternedDisk('failing-a', 6);
    const writer = await repo.createRestorePointWriter({ vm: { uuid: 'vm', name: 'vm' } });
    const broken = (async function* (): AsyncGenerator<DiskBlock> {
      await new Promise((resolve) => setImmediate(resolve));
      yield { index: 0, data: Buffer.alloc(100, 1) };
    })();
    const outcomes = await Promise.allSettled([
      writer.writeDisk({ key: 'xvda', virtualSize: a.virtualSize }, slowly(a, [], 'a')),
      writer.writeDisk({ key: 'xvdb', virtualSize: a.virtualSize }, broken),
    ]);
    expect(outcomes[1]).toMatchObject({ status: 'rejected', reason: { code: 'INVALID_BLOCK' } });
    await expect(writer.commit()).rejects.toMatchObject({ code: 'WRITER_CLOSED' });
    await writer.abort();
    expect(await repo.listRestorePointIds()).toEqual([]);
  });

  it('uploads the chunks named in rewriteChunks over their damaged copies, even when listed as existing', async () => {
    const disk = patternedDisk('rewrite', 10);
    const first = await repo.createRestorePointWriter({ vm: { uuid: 'vm', name: 'vm' } });
    await first.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
    const base = await first.commit();
    const reader = await repo.openRestorePoint(base.id);
    const block = reader.disk('xvda').allocatedBlocks[0];
    const damaged = reader.disk('xvda').chunkId(block)!;
    const file = join(dir.path, chunkKey(damaged));
    const bytes = await readFile(file);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] ?? 0) ^ 0xff;
    await writeFile(file, bytes);
    const before = await repo.verify();
    expect(before.damagedChunks.map((chunk) => chunk.chunkId)).toEqual([damaged]);

    // Without the option the damaged copy counts as present: the new restore point is damaged too.
    const plain = await repo.createRestorePointWriter(
      { vm: { uuid: 'vm', name: 'vm' } },
      { knownChunks: 'list' },
    );
    const reused = await plain.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
    expect(reused.uploadedChunks).toBe(0);
    await plain.abort();

    const writer = await repo.createRestorePointWriter(
      { vm: { uuid: 'vm', name: 'vm' } },
      { knownChunks: 'list', rewriteChunks: new Set([damaged]) },
    );
    const entry = await writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
    const manifest = await writer.commit();
    expect(entry.uploadedChunks).toBe(1);
    expect((await repo.verify()).ok).toBe(true);
    for (const id of [base.id, manifest.id]) {
      const restored = await collect((await repo.openRestorePoint(id)).disk('xvda').createReadStream());
      expect(restored.equals(rawImage(disk))).toBe(true);
    }
  });
});
