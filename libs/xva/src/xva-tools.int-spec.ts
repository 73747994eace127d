import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { describeIntegration, scratchDir } from '@haven/testing';
import {
  XVA_CHUNK_SIZE,
  buildXvaVmRecord,
  createXvaStream,
  readXvaStream,
  xvaChunkChecksum,
  type XvaStreamMetadata,
} from './index';

const run = promisify(execFile);
const MiB = XVA_CHUNK_SIZE;

function sampleDisk(): { raw: Buffer; record: ReturnType<typeof buildXvaVmRecord>['record']; id: string } {
  const size = 4 * MiB + 4096;
  const raw = Buffer.alloc(size);
  for (let i = 0; i < MiB; i += 4) raw.writeUInt32LE((i * 2654435761) >>> 0, i);
  raw.fill(0x5a, 3 * MiB, 3 * MiB + 100_000);
  raw.fill(0x11, 4 * MiB, size);
  const { record, diskIds } = buildXvaVmRecord({
    vm: { name_label: 'tool-check' },
    disks: [{ vdi: { name_label: 'disk', virtual_size: size } }],
  });
  return { raw, record, id: diskIds[0] };
}

function readChunk(raw: Buffer) {
  return (index: number) =>
    Promise.resolve(raw.subarray(index * MiB, Math.min(raw.length, (index + 1) * MiB)));
}

async function rebuild(path: string): Promise<{ metadata: XvaStreamMetadata; disk: Buffer }> {
  let metadata: XvaStreamMetadata | undefined;
  let disk = Buffer.alloc(0);
  for await (const item of readXvaStream(createReadStream(path))) {
    if (item.type === 'metadata') {
      metadata = item;
      disk = Buffer.alloc(item.disks[0].virtualSize);
    } else item.data.copy(disk, item.chunkIndex * MiB);
  }
  return { metadata: metadata!, disk };
}

describeIntegration('XVA against GNU tar, gzip and zstd', ['zstd'], () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    dir = await scratchDir('haven-xva-');
  });
  afterAll(async () => {
    await dir.cleanup();
  });

  it('GNU tar lists and extracts our archive, and the extracted checksums are XXH64 of the chunks', async () => {
    const { raw, record, id } = sampleDisk();
    const path = join(dir.path, 'plain.xva');
    await pipeline(
      createXvaStream({ vm: record, disks: [{ id, virtualSize: raw.length, readChunk: readChunk(raw) }] }),
      createWriteStream(path),
    );
    const { stdout } = await run('tar', ['-tf', path]);
    expect(stdout.trim().split('\n')).toEqual([
      'ova.xml',
      `${id}/00000000`,
      `${id}/00000000.xxhash`,
      `${id}/00000003`,
      `${id}/00000003.xxhash`,
      `${id}/00000004`,
      `${id}/00000004.xxhash`,
    ]);
    const out = join(dir.path, 'extracted');
    await run('mkdir', ['-p', out]);
    await run('tar', ['-xf', path, '-C', out]);
    const chunk3 = await readFile(join(out, id, '00000003'));
    expect(chunk3.equals(raw.subarray(3 * MiB, 4 * MiB))).toBe(true);
    expect((await readFile(join(out, id, '00000003.xxhash'), 'latin1')).trim()).toBe(
      await xvaChunkChecksum('xxhash', chunk3),
    );
    expect((await readFile(join(out, id, '00000004'))).length).toBe(4096);
    expect(await readFile(join(out, 'ova.xml'), 'utf8')).toContain(
      '<name>name_label</name><value>tool-check</value>',
    );
  });

  it('zstd -d and gunzip decode our compressed archives to the plain one', async () => {
    const { raw, record, id } = sampleDisk();
    const timestamp = new Date('2025-01-01T00:00:00Z');
    const make = (compression: 'none' | 'gzip' | 'zstd', file: string) =>
      pipeline(
        createXvaStream({
          vm: { ...record, version: { date: '2025-01-01' } },
          disks: [{ id, virtualSize: raw.length, readChunk: readChunk(raw) }],
          compression,
          timestamp,
        }),
        createWriteStream(join(dir.path, file)),
      );
    await make('none', 'same.xva');
    await make('gzip', 'same.xva.gz');
    await make('zstd', 'same.xva.zst');
    const plain = await readFile(join(dir.path, 'same.xva'));
    const { stdout: fromZstd } = await run('zstd', ['-d', '-c', join(dir.path, 'same.xva.zst')], {
      encoding: 'buffer',
      maxBuffer: 64 * MiB,
    });
    const { stdout: fromGzip } = await run('gzip', ['-d', '-c', join(dir.path, 'same.xva.gz')], {
      encoding: 'buffer',
      maxBuffer: 64 * MiB,
    });
    expect(fromZstd.equals(plain)).toBe(true);
    expect(fromGzip.equals(plain)).toBe(true);
  });

  it('reads archives compressed by the zstd and gzip tools (one streaming frame / member)', async () => {
    const { raw, record, id } = sampleDisk();
    const plain = join(dir.path, 'tool.xva');
    await pipeline(
      createXvaStream({ vm: record, disks: [{ id, virtualSize: raw.length, readChunk: readChunk(raw) }] }),
      createWriteStream(plain),
    );
    await run('sh', [
      '-c',
      `zstd -q -c < "${plain}" > "${plain}.zst" && gzip -c < "${plain}" > "${plain}.gz"`,
    ]);
    for (const file of [`${plain}.zst`, `${plain}.gz`]) {
      const { metadata, disk } = await rebuild(file);
      expect(metadata.compression).toBe(file.endsWith('.zst') ? 'zstd' : 'gzip');
      expect(disk.equals(raw)).toBe(true);
    }
  });
});
