// One disk read out of a full-backup archive (ArchiveDiskReader), as ratios to one plain pass of
// the XVA reader over the same archive in the same run: raw, a 1 MiB range at 3/4 of the disk,
// a VHD (two passes), per host compression. Local remote, plain repository.
// Usage: node bin/run.js bench/jobs/archive-disk.bench.ts [--mib 256]
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { initRepository } from '@haven/repository';
import localRemote from '@haven/remote-local';
import { scratchDir } from '@haven/testing';
import {
  buildXvaVmRecord,
  createXvaStream,
  readXvaStream,
  XVA_CHUNK_SIZE,
  type XvaCompression,
} from '@haven/xva';
import {
  ArchiveDiskReader,
  ArchiveStore,
  ARCHIVE_FORMAT,
  ARCHIVE_FORMAT_VERSION,
  ARCHIVE_SEGMENT_SIZE,
  cutSegments,
  newArchiveId,
  type ArchiveManifest,
} from '@haven/job-backup-full/archive';
import { arg, runBench } from '../bench.kit';

const MiB = 1024 * 1024;
const SIZE = arg('mib', 256) * MiB;
const VM = '6a0c5a1e-1b2c-4d3e-8f4a-5b6c7d8e9f0a';

/** Per 8 MiB: 2 MiB random, 2 MiB of repeated text, 4 MiB of zeros (left out of the XVA). */
function chunkOf(index: number): Buffer {
  const within = (index * XVA_CHUNK_SIZE) % (8 * MiB);
  if (within < 2 * MiB) return randomBytes(XVA_CHUNK_SIZE);
  if (within < 4 * MiB) return Buffer.alloc(XVA_CHUNK_SIZE, 'haven backup block ');
  return Buffer.alloc(XVA_CHUNK_SIZE);
}

async function drain(stream: AsyncIterable<Buffer>): Promise<number> {
  let bytes = 0;
  for await (const part of stream) bytes += part.length;
  return bytes;
}

async function* chunksOf(items: AsyncIterable<{ type: string; data?: Buffer }>): AsyncGenerator<Buffer> {
  for await (const item of items) if (item.data !== undefined) yield item.data;
}

const rssMiB = (): string => `${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`;

/** Best of two runs: the machine is shared, the slower run is the noise. */
async function timed(work: () => Promise<unknown>): Promise<number> {
  let best = Infinity;
  for (let run = 0; run < 2; run++) {
    const start = process.hrtime.bigint();
    await work();
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
  }
  return best;
}

async function main(): Promise<void> {
  const folder = await scratchDir('haven-bench-archive-disk-');
  const store = await localRemote.create({ path: folder.path }, { name: 'bench' });
  try {
    const archives = ArchiveStore.forRepository(await initRepository(store, {}));
    const { record, diskIds } = buildXvaVmRecord({
      vm: { name_label: 'bench' },
      disks: [{ vdi: { name_label: 'disk', virtual_size: SIZE }, vbd: { userdevice: '0' } }],
    });
    process.stdout.write(
      `disk ${SIZE / MiB} MiB (1/4 random, 1/4 text, 1/2 zeros), local remote, best of 2 runs, ${ARCHIVE_SEGMENT_SIZE / MiB} MiB segments\n`,
    );
    for (const compression of ['none', 'zstd'] as const satisfies readonly XvaCompression[]) {
      const location = { vmUuid: VM, archiveId: newArchiveId(`bench-${compression}`) };
      const segments = [];
      const xva = createXvaStream({
        vm: record,
        disks: [
          { id: diskIds[0] ?? '', virtualSize: SIZE, readChunk: (index) => Promise.resolve(chunkOf(index)) },
        ],
        compression,
      });
      for await (const segment of cutSegments(Readable.from(xva), ARCHIVE_SEGMENT_SIZE))
        segments.push(await archives.writeSegment(location, segment.index, segment.data, segment.sha256));
      const totalSize = segments.reduce((sum, segment) => sum + segment.size, 0);
      const manifest: ArchiveManifest = {
        format: ARCHIVE_FORMAT,
        version: ARCHIVE_FORMAT_VERSION,
        id: location.archiveId,
        vm: { uuid: VM, name: 'bench' },
        takenAt: new Date().toISOString(),
        createdAt: new Date().toISOString(),
        compression,
        encrypted: false,
        segmentSize: ARCHIVE_SEGMENT_SIZE,
        segments,
        totalSize,
        storedSize: totalSize,
      };
      await archives.commit(manifest);
      const afterWrite = rssMiB();
      const reader = new ArchiveDiskReader(archives, manifest);
      const disk = await reader.disk('0');

      const baseline = await timed(async () => {
        await drain(chunksOf(readXvaStream(archives.createReadStream(manifest))));
      });
      let rawBytes = 0;
      const raw = await timed(async () => (rawBytes = await drain(reader.createRawStream(disk))));
      const at = Math.floor((SIZE * 3) / 4);
      const range = await timed(() =>
        drain(reader.createRawStream(disk, { range: { start: at, end: at + MiB - 1 } })),
      );
      let vhdBytes = 0;
      const vhd = await timed(
        async () => (vhdBytes = await drain((await reader.createVhdStream(disk)).stream)),
      );
      if (rawBytes !== SIZE) throw new Error(`raw disk is ${rawBytes} bytes, expected ${SIZE}`);
      const ratio = (seconds: number): string => `${(seconds / baseline).toFixed(2)} x`;
      process.stdout.write(
        `${compression.padEnd(4)} archive ${(totalSize / MiB).toFixed(0)} MiB | one XVA pass ${baseline.toFixed(2)} s` +
          ` | raw ${raw.toFixed(2)} s = ${ratio(raw)}, ${(SIZE / MiB / raw).toFixed(0)} MiB/s of disk` +
          ` | 1 MiB range at 3/4 ${range.toFixed(2)} s = ${ratio(range)}` +
          ` | VHD ${(vhdBytes / MiB).toFixed(0)} MiB ${vhd.toFixed(2)} s = ${ratio(vhd)}` +
          ` | peak RSS ${afterWrite} after writing, ${rssMiB()} after reading\n`,
      );
    }
  } finally {
    await store.close();
    await folder.cleanup();
  }
}

runBench(main);
