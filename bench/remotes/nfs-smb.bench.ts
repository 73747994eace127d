// Throughput of the NFS (user-space NFSv3 client, nfs-ganesha) and SMB (built-in SMB 2.1 client,
// Samba) remotes: write and read MB/s of 2 MiB and 64 MiB objects at concurrency 1, 4 and 16, as a
// ratio to `dd ... conv=fsync` writing the same bytes to local disk in the same run.
//
//   node bin/run.js bench/remotes/nfs-smb.bench.ts            # default sizes (about 2 minutes)
//   node bin/run.js bench/remotes/nfs-smb.bench.ts --big      # four times the objects per round
//   node bin/run.js bench/remotes/nfs-smb.bench.ts --only=nfs # or --only=smb
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { createNfsDriver } from '@haven/remote-nfs';
import { Remote, type RemoteStore } from '@haven/remote-sdk';
import { plugin as smbPlugin } from '@haven/remote-smb';
import { scratchDir, startNfsGanesha, startSamba } from '@haven/testing';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const big = process.argv.includes('--big');
const only = process.argv.find((argument) => argument.startsWith('--only='))?.slice('--only='.length);
const SIZES = [2 * MiB, 64 * MiB];
const CONCURRENCY = [1, 4, 16];

function objectCount(size: number, concurrency: number): number {
  const scale = big ? 4 : 1;
  return size >= 64 * MiB ? Math.max(concurrency, 4) * scale : Math.max(concurrency * 4, 32) * scale;
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

async function timed(work: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

interface Row {
  remote: string;
  size: number;
  concurrency: number;
  objects: number;
  ddMBs: number;
  writeMBs: number;
  readMBs: number;
}

async function main(): Promise<void> {
  const scratch = await scratchDir('haven-bench-remotes-');
  const source = join(scratch.path, 'source.bin');
  const data = randomBytes(64 * MiB);
  await writeFile(source, data);
  const ddDir = join(scratch.path, 'dd');
  await mkdir(ddDir);

  const nfsServer = only === 'smb' ? undefined : await startNfsGanesha();
  const smbServer = only === 'nfs' ? undefined : await startSamba();
  const remotes: { label: string; store: RemoteStore }[] = [];
  if (nfsServer) {
    const driver = createNfsDriver({
      host: nfsServer.host,
      export: nfsServer.exportPath,
      nfsPort: nfsServer.nfsPort,
      mountPort: nfsServer.mountPort,
    });
    remotes.push({ label: 'nfs', store: new Remote(driver, { name: 'bench-nfs' }) });
  }
  if (smbServer) {
    const store = await Promise.resolve(
      smbPlugin.create(
        {
          host: smbServer.host,
          port: smbServer.port,
          share: smbServer.share,
          username: smbServer.username,
          password: smbServer.password,
        },
        { name: 'bench-smb' },
      ),
    );
    remotes.push({ label: 'smb', store });
  }

  const rows: Row[] = [];
  try {
    for (const size of SIZES) {
      const body = data.subarray(0, size);
      for (const concurrency of CONCURRENCY) {
        const objects = objectCount(size, concurrency);
        const bytes = size * objects;
        // Baseline: the same bytes written by dd to local disk, flushed, same concurrency.
        const ddSeconds = await timed(() =>
          lanes(objects, concurrency, async (index) => {
            await run('dd', [
              `if=${source}`,
              `of=${join(ddDir, `o${index}`)}`,
              `bs=${Math.min(size, 4 * MiB)}`,
              `count=${size / Math.min(size, 4 * MiB)}`,
              'conv=fsync',
              'status=none',
            ]);
          }),
        );
        await rm(ddDir, { recursive: true, force: true });
        await mkdir(ddDir);
        for (const { label, store } of remotes) {
          const prefix = `bench-${size}-${concurrency}`;
          const writeSeconds = await timed(() =>
            lanes(objects, concurrency, (index) => store.put(`${prefix}/o${index}`, body)),
          );
          const readSeconds = await timed(() =>
            lanes(objects, concurrency, async (index) => {
              let received = 0;
              for await (const chunk of await store.get(`${prefix}/o${index}`))
                received += (chunk as Buffer).length;
              if (received !== size)
                throw new Error(`read ${received} bytes of ${prefix}/o${index}, expected ${size}`);
            }),
          );
          await lanes(objects, 8, (index) => store.delete(`${prefix}/o${index}`));
          const row: Row = {
            remote: label,
            size,
            concurrency,
            objects,
            ddMBs: bytes / MiB / ddSeconds,
            writeMBs: bytes / MiB / writeSeconds,
            readMBs: bytes / MiB / readSeconds,
          };
          rows.push(row);
          process.stdout.write(
            `${label} ${size / MiB} MiB x${objects} c=${concurrency}: write ${row.writeMBs.toFixed(0)} MB/s (${(row.writeMBs / row.ddMBs).toFixed(2)}x dd), read ${row.readMBs.toFixed(0)} MB/s (${(row.readMBs / row.ddMBs).toFixed(2)}x dd), dd ${row.ddMBs.toFixed(0)} MB/s\n`,
          );
        }
      }
    }
  } finally {
    for (const { store } of remotes) await store.close();
    await nfsServer?.stop();
    await smbServer?.stop();
    await scratch.cleanup();
  }

  process.stdout.write(
    '\n| remote | object | concurrency | objects | write MB/s | write / dd | read MB/s | read / dd | dd MB/s |\n',
  );
  process.stdout.write('| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n');
  for (const row of rows) {
    process.stdout.write(
      `| ${row.remote} | ${row.size / MiB} MiB | ${row.concurrency} | ${row.objects} | ${row.writeMBs.toFixed(0)} | ${(row.writeMBs / row.ddMBs).toFixed(2)} | ${row.readMBs.toFixed(0)} | ${(row.readMBs / row.ddMBs).toFixed(2)} | ${row.ddMBs.toFixed(0)} |\n`,
    );
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
