// XVA write and read throughput of @haven/xva per compression, as ratios to `cat`, `gzip` and `zstd`
// run on the same data in the same run. Usage: node bin/run.js bench/formats/xva.bench.ts [--big]
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import {
  XVA_CHUNK_SIZE,
  buildXvaVmRecord,
  createXvaStream,
  readXvaStream,
  type XvaCompression,
} from '@haven/xva';
import { openFileSource } from '@haven/vhd';

const big = process.argv.includes('--big');
const SIZE = (big ? 2048 : 256) * 1024 * 1024;
const RUNS = 2;

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

async function best(task: () => Promise<void> | void): Promise<number> {
  let fastest = Infinity;
  for (let i = 0; i < RUNS; i++) {
    const start = process.hrtime.bigint();
    await task();
    fastest = Math.min(fastest, seconds(start));
  }
  return fastest;
}

async function makeRaw(path: string): Promise<void> {
  // Alternating 2 MiB of random data, 2 MiB of a repeated text pattern (compressible), 4 MiB of zeros.
  const file = await open(path, 'w');
  const text = Buffer.alloc(2 * 1024 * 1024, 'haven backup block ');
  try {
    await file.truncate(SIZE);
    for (let offset = 0; offset < SIZE; offset += 8 * 1024 * 1024) {
      await file.write(randomBytes(2 * 1024 * 1024), 0, 2 * 1024 * 1024, offset);
      await file.write(text, 0, text.length, offset + 2 * 1024 * 1024);
    }
  } finally {
    await file.close();
  }
}

function shell(command: string): void {
  execFileSync('sh', ['-c', command]);
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'haven-bench-xva-'));
  try {
    const raw = join(dir, 'disk.raw');
    await makeRaw(raw);
    const { record, diskIds } = buildXvaVmRecord({
      vm: { name_label: 'bench' },
      disks: [{ vdi: { name_label: 'disk', virtual_size: SIZE } }],
    });
    const write = async (compression: XvaCompression, out: string): Promise<void> => {
      const source = await openFileSource(raw);
      try {
        await pipeline(
          createXvaStream({
            vm: record,
            disks: [
              {
                id: diskIds[0] ?? '',
                virtualSize: SIZE,
                readChunk: (index) => source.read(index * XVA_CHUNK_SIZE, XVA_CHUNK_SIZE),
              },
            ],
            compression,
          }),
          createWriteStream(out),
        );
      } finally {
        await source.close();
      }
    };
    const read = async (file: string): Promise<void> => {
      let bytes = 0;
      for await (const item of readXvaStream(createReadStream(file, { highWaterMark: 1024 * 1024 }))) {
        if (item.type === 'chunk') bytes += item.data.length;
      }
      if (bytes === 0) throw new Error('no chunk read');
    };
    process.stdout.write(
      `disk: ${SIZE / 1024 / 1024} MiB (1/4 random, 1/4 text, 1/2 zeros); best of ${RUNS} runs\n`,
    );
    const baseline: Record<XvaCompression, { write: string; read: (file: string) => string }> = {
      none: { write: `cat "${raw}" > /dev/null`, read: (file) => `cat "${file}" > /dev/null` },
      gzip: { write: `gzip -6 -c "${raw}" > /dev/null`, read: (file) => `gzip -d -c "${file}" > /dev/null` },
      zstd: {
        write: `zstd -q -3 -T1 -c "${raw}" > /dev/null`,
        read: (file) => `zstd -q -d -c "${file}" > /dev/null`,
      },
    };
    const mibps = (time: number): string => `${(SIZE / time / 1024 / 1024).toFixed(0)} MiB/s of disk`;
    for (const compression of ['none', 'zstd', 'gzip'] as const) {
      const file = join(dir, `vm.xva.${compression}`);
      const baseWrite = await best(() => shell(baseline[compression].write));
      const ourWrite = await best(() => write(compression, file));
      const baseRead = await best(() => shell(baseline[compression].read(file)));
      const ourRead = await best(() => read(file));
      const size = (await stat(file)).size;
      process.stdout.write(
        `${compression.padEnd(5)} archive ${(size / 1024 / 1024).toFixed(0)} MiB | write ${ourWrite.toFixed(2)} s ${mibps(ourWrite)} = ${(baseWrite / ourWrite).toFixed(2)} x \`${baseline[compression].write.split(' ')[0] ?? ''}\` | read ${ourRead.toFixed(2)} s ${mibps(ourRead)} = ${(baseRead / ourRead).toFixed(2)} x \`${baseline[compression].read('').split(' ')[0] ?? ''}\`\n`,
      );
    }
    process.stdout.write(`peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

void main();
