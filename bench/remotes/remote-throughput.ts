// Throughput of any RemoteStore: write and read MB/s of 2 MiB and 64 MiB objects at concurrency 1,
// 4 and 16, each as a ratio to `dd` writing the same bytes to local disk (fsync at the end) and
// reading them back, in the same run. Used by remotes.bench.ts; any other remote type can call
// measureRemoteThroughput() with its own store factory.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import type { RemoteStore } from '@haven/remote-sdk';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const MAX_SOURCE_BYTES = 64 * MiB;

export interface ThroughputRow {
  remote: string;
  objectBytes: number;
  concurrency: number;
  objects: number;
  writeMBps: number;
  readMBps: number;
  ddWriteMBps: number;
  ddReadMBps: number;
}

export interface ThroughputOptions {
  /** Folder on local disk for the dd baseline. */
  scratch: string;
  sizes?: readonly number[];
  concurrency?: readonly number[];
  /** Bytes moved per (size, concurrency) round; default 128 MiB. */
  bytesPerRound?: number;
}

async function lanes(
  count: number,
  concurrency: number,
  work: (index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) await work(next++);
    }),
  );
}

async function seconds(work: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/**
 * The same bytes written to local disk by one `dd` (fsync at the end, as a put's fsync), then read
 * back by `dd`: the disk's own speed, without a process start per object.
 */
async function ddBaseline(
  folder: string,
  source: string,
  totalBytes: number,
): Promise<{ write: number; read: number }> {
  await mkdir(folder, { recursive: true });
  const target = join(folder, 'round.bin');
  const sourceMiB = Math.max(1, Math.floor(MAX_SOURCE_BYTES / MiB));
  const write = await seconds(async () => {
    // The source file is smaller than a round: dd appends it as many times as needed.
    for (let written = 0; written < totalBytes; written += MAX_SOURCE_BYTES) {
      const count = Math.min(sourceMiB, (totalBytes - written) / MiB);
      await execFileAsync('dd', [
        `if=${source}`,
        `of=${target}`,
        'bs=1M',
        `count=${String(count)}`,
        `seek=${String(written / MiB)}`,
        'conv=notrunc',
        'status=none',
      ]);
    }
    await execFileAsync('dd', [
      `if=/dev/null`,
      `of=${target}`,
      'conv=notrunc,fsync',
      'oflag=append',
      'status=none',
    ]);
  });
  const read = await seconds(async () => {
    await execFileAsync('dd', [`if=${target}`, 'of=/dev/null', 'bs=1M', 'status=none']);
  });
  await rm(folder, { recursive: true, force: true });
  const mb = totalBytes / 1e6;
  return { write: mb / write, read: mb / read };
}

/** Measures one remote; objects it writes live under bench-throughput/ and are deleted after each round. */
export async function measureRemoteThroughput(
  label: string,
  store: RemoteStore,
  options: ThroughputOptions,
): Promise<ThroughputRow[]> {
  const sizes = options.sizes ?? [2 * MiB, 64 * MiB];
  const concurrencies = options.concurrency ?? [1, 4, 16];
  const perRound = options.bytesPerRound ?? 128 * MiB;
  const data = randomBytes(Math.max(...sizes));
  const source = join(options.scratch, 'dd-source.bin');
  await writeFile(
    source,
    data.length >= MAX_SOURCE_BYTES ? data.subarray(0, MAX_SOURCE_BYTES) : randomBytes(MAX_SOURCE_BYTES),
  );
  const rows: ThroughputRow[] = [];
  for (const objectBytes of sizes) {
    const body = data.subarray(0, objectBytes);
    for (const concurrency of concurrencies) {
      const objects = Math.max(concurrency, Math.round(perRound / objectBytes));
      const keys = Array.from(
        { length: objects },
        (_, i) => `bench-throughput/${objectBytes}/${concurrency}/${i}`,
      );
      // Large objects go as streams (multipart / staged paths), small ones as buffers, as Haven does.
      const write = await seconds(() =>
        lanes(objects, concurrency, async (i) => {
          const key = keys[i] ?? '';
          if (objectBytes >= 64 * MiB) {
            const chunks = Array.from({ length: objectBytes / MiB }, (_, c) =>
              body.subarray(c * MiB, (c + 1) * MiB),
            );
            await store.put(key, Readable.from(chunks), { size: objectBytes });
          } else await store.put(key, body);
        }),
      );
      const read = await seconds(() =>
        lanes(objects, concurrency, async (i) => {
          let bytes = 0;
          for await (const chunk of await store.get(keys[i] ?? '')) bytes += (chunk as Buffer).length;
          if (bytes !== objectBytes)
            throw new Error(`${label}: read ${bytes} bytes of ${keys[i] ?? ''}, expected ${objectBytes}`);
        }),
      );
      await lanes(objects, 16, (i) => store.delete(keys[i] ?? ''));
      const dd = await ddBaseline(join(options.scratch, 'dd'), source, objects * objectBytes);
      const mb = (objects * objectBytes) / 1e6;
      const row: ThroughputRow = {
        remote: label,
        objectBytes,
        concurrency,
        objects,
        writeMBps: mb / write,
        readMBps: mb / read,
        ddWriteMBps: dd.write,
        ddReadMBps: dd.read,
      };
      rows.push(row);
      process.stdout.write(`${formatRow(row)}\n`);
    }
  }
  return rows;
}

export function formatHeader(): string {
  return '| remote | object | conc. | objects | write MB/s | dd write MB/s | write ratio | read MB/s | dd read MB/s | read ratio |\n|---|---|---|---|---|---|---|---|---|---|';
}

export function formatRow(row: ThroughputRow): string {
  const f = (value: number): string => value.toFixed(0);
  const r = (value: number): string => value.toFixed(2);
  return `| ${row.remote} | ${row.objectBytes / MiB} MiB | ${row.concurrency} | ${row.objects} | ${f(row.writeMBps)} | ${f(row.ddWriteMBps)} | ${r(row.writeMBps / row.ddWriteMBps)} | ${f(row.readMBps)} | ${f(row.ddReadMBps)} | ${r(row.readMBps / row.ddReadMBps)} |`;
}
