import { parseVhdStream } from '@haven/vhd';
import { scratchDir } from '@haven/testing';
import type { CodecName } from './codecs/chunk-codec';
import type { CipherName } from './ciphers/chunk-cipher';
import { initRepository, type Repository } from './repository';
import {
  BLOCK,
  blocksOf,
  changedDisk,
  collect,
  isZero,
  localRemote,
  patternedDisk,
  rawImage,
  type DiskPattern,
} from './testing/disk-pattern.fixture';

async function backup(repo: Repository, vm: string, disks: Record<string, DiskPattern>, tenant?: string) {
  const writer = await repo.createRestorePointWriter({
    vm: { uuid: vm, name: `vm ${vm}` },
    ...(tenant ? { tenant } : {}),
  });
  const results = [];
  for (const [key, disk] of Object.entries(disks))
    results.push(await writer.writeDisk({ key, virtualSize: disk.virtualSize }, blocksOf(disk)));
  return { manifest: await writer.commit(), results };
}

async function vhdToRaw(
  stream: NodeJS.ReadableStream,
  base?: Buffer,
): Promise<{ raw: Buffer; blocks: number[]; type: unknown }> {
  let raw = base !== undefined ? Buffer.from(base) : Buffer.alloc(0);
  const blocks: number[] = [];
  let type: unknown;
  for await (const item of parseVhdStream(stream as AsyncIterable<Buffer>)) {
    if (item.type === 'metadata') {
      type = item.footer.diskType;
      if (base === undefined) raw = Buffer.alloc(item.footer.currentSize);
    } else {
      blocks.push(item.index);
      item.data.copy(raw, item.index * BLOCK, 0, Math.min(BLOCK, raw.length - item.index * BLOCK));
    }
  }
  return { raw, blocks, type };
}

const variants: { codec: CodecName; cipher?: CipherName }[] = [];
for (const codec of ['none', 'zstd', 'gzip'] as const) {
  variants.push({ codec });
  variants.push({ codec, cipher: 'aes-256-gcm' });
}
variants.push({ codec: 'zstd', cipher: 'chacha20-poly1305' });

describe.each(variants)('restore point round trip ($codec, $cipher)', ({ codec, cipher }) => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let repo: Repository;
  beforeAll(async () => {
    dir = await scratchDir('haven-rt-');
    repo = await initRepository(localRemote(dir.path), {
      compression: { codec },
      ...(cipher ? { key: 'passphrase', cipher, kdf: { N: 1024 } } : {}),
    });
  });
  afterAll(() => dir.cleanup());

  const disk = patternedDisk(`rt-${codec}`, 24, 3 * 512 * 7);
  const second = patternedDisk(`rt2-${codec}`, 5);

  it('reads back raw, by block, by range and as a dynamic VHD, byte for byte', async () => {
    const { manifest, results } = await backup(repo, 'vm-a', { xvda: disk, xvdb: second });
    const nonZero = [...disk.blocks.values()].filter((data) => !isZero(data));
    const distinct = new Set(nonZero.map((data) => data.toString('base64')));
    // Zero blocks are not stored, repeated blocks once.
    expect(results[0]?.allocatedBlocks).toBe(nonZero.length);
    expect(results[0].uploadedChunks).toBe(distinct.size);
    expect(results[0].logicalBytes).toBe(nonZero.reduce((sum, data) => sum + data.length, 0));

    const point = await repo.openRestorePoint(manifest.id);
    const reader = point.disk('xvda');
    const expected = rawImage(disk);
    expect((await collect(reader.createReadStream())).equals(expected)).toBe(true);
    expect(
      (await collect(point.disk('xvdb').createReadStream({ readAhead: 1 }))).equals(rawImage(second)),
    ).toBe(true);
    for (let index = 0; index < 24; index++) {
      expect(
        (await reader.readBlock(index)).equals(expected.subarray(index * BLOCK, (index + 1) * BLOCK)),
      ).toBe(true);
    }
    for (const [start, length] of [
      [0, 1],
      [BLOCK - 10, 20],
      [5 * BLOCK + 123, 3 * BLOCK],
      [disk.virtualSize - 100, 100],
    ] as const) {
      expect((await reader.read(start, length)).equals(expected.subarray(start, start + length))).toBe(true);
    }
    const vhd = await vhdToRaw(reader.createVhdStream({ type: 'dynamic' }));
    expect(vhd.type).toBe('dynamic');
    expect(vhd.raw.equals(expected)).toBe(true);
    expect(vhd.blocks).toEqual(reader.allocatedBlocks);
  });

  it('stores only changed chunks for the next restore point and streams a differencing VHD', async () => {
    const first = await backup(repo, 'vm-b', { xvda: disk });
    expect(first.results[0].uploadedChunks).toBe(0); // everything already in the repository
    const next = changedDisk(disk, `chg-${codec}`, 3);
    // One block becomes zero: a differencing VHD must carry it explicitly.
    const zeroed = [...disk.blocks.entries()].find(
      ([index, data]) => !isZero(data) && next.blocks.get(index) === data,
    )![0];
    next.blocks.set(zeroed, Buffer.alloc(BLOCK));
    const secondRun = await backup(repo, 'vm-b', { xvda: next });
    const changed = [...next.blocks.entries()].filter(
      ([index, data]) => !data.equals(disk.blocks.get(index) ?? Buffer.alloc(0)),
    );
    expect(secondRun.results[0].uploadedChunks).toBeLessThanOrEqual(3);
    expect(secondRun.results[0].reusedChunks).toBeGreaterThan(0);

    const basePoint = await repo.openRestorePoint(first.manifest.id);
    const nextPoint = await repo.openRestorePoint(secondRun.manifest.id);
    const diff = nextPoint.disk('xvda').createVhdStream({
      type: 'differencing',
      base: basePoint.disk('xvda'),
      parentUuid: '11111111-2222-3333-4444-555555555555',
    });
    const applied = await vhdToRaw(diff, rawImage(disk));
    expect(applied.type).toBe('differencing');
    expect(applied.blocks.sort((a, b) => a - b)).toEqual(
      changed.map(([index]) => index).sort((a, b) => a - b),
    );
    expect(applied.raw.equals(rawImage(next))).toBe(true);
  });

  it('lists restore points and reports statistics per VM and tenant', async () => {
    await backup(repo, 'vm-c', { xvda: second }, 'tenant-x');
    const all = await repo.listRestorePoints();
    expect(all.map((point) => point.manifest.vm.uuid).sort()).toEqual(['vm-a', 'vm-b', 'vm-b', 'vm-c']);
    expect(await repo.listRestorePoints({ vmUuid: 'vm-b' })).toHaveLength(2);
    const stats = await repo.statistics();
    expect(stats.repository.restorePoints).toBe(4);
    expect(stats.repository.storedBytes).toBe(stats.repository.chunkBytes);
    expect(stats.repository.dedupRatio).toBeGreaterThan(2);
    const vmB = stats.vms.find((vm) => vm.vmUuid === 'vm-b')!;
    expect(vmB.logicalBytes).toBeGreaterThan(vmB.storedBytes);
    expect(stats.tenants.map((tenant) => tenant.tenant)).toEqual(['', 'tenant-x']);
    expect(stats.tenants[1]).toMatchObject({
      restorePoints: 1,
      logicalBytes: all.find((p) => p.manifest.vm.uuid === 'vm-c')!.manifest.sizes.logicalBytes,
    });
  });

  it('stores an index of mostly ids uncompressed, a sparse one with the repository codec, and reads both', async () => {
    const writer = await repo.createRestorePointWriter({ vm: { uuid: 'vm-i', name: 'vm i' } });
    await writer.writeDisk({ key: 'dense', virtualSize: disk.virtualSize }, blocksOf(disk));
    // 200 GiB with two blocks: a 12.5 KiB bitmap that compresses, 64 bytes of ids.
    const sparseSize = 100_000 * BLOCK;
    const data = [...disk.blocks.values()].find((block) => !isZero(block)) as Buffer;
    await writer.writeDisk({ key: 'sparse', virtualSize: sparseSize }, [
      { index: 5, data },
      { index: 99_999, data },
    ]);
    const manifest = await writer.commit();
    const codecOf = async (key: string) => {
      const entry = manifest.disks.find((candidate) => candidate.key === key)!;
      return (await repo.store.getBuffer(entry.index))[5];
    };
    const codecIds = { none: 0, zstd: 1 } as const;
    expect(await codecOf('dense')).toBe(codecIds.none);
    // Metadata is zstd in any compressed repository (gzip is for chunks only).
    expect(await codecOf('sparse')).toBe(codec === 'none' ? codecIds.none : codecIds.zstd);
    const point = await repo.openRestorePoint(manifest.id);
    expect((await collect(point.disk('dense').createReadStream())).equals(rawImage(disk))).toBe(true);
    const sparse = point.disk('sparse');
    expect([...sparse.index.allocatedBlocks()]).toEqual([5, 99_999]);
    expect((await sparse.readBlock(99_999)).equals(data)).toBe(true);
    expect((await sparse.readBlock(6)).equals(Buffer.alloc(BLOCK))).toBe(true);
  });
});
