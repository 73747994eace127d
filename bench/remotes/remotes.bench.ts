// Throughput of the local, S3 (s3rver) and Azure (Azurite) remotes, as ratios to dd in the same run.
//
//   node bin/run.js bench/remotes/remotes.bench.ts                 # 128 MiB per round (a few minutes)
//   node bin/run.js bench/remotes/remotes.bench.ts --big           # 1 GiB per round
//   node bin/run.js bench/remotes/remotes.bench.ts --only=local,s3 # a subset
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { plugin as azurePlugin } from '@haven/remote-azure';
import { plugin as localPlugin } from '@haven/remote-local';
import { plugin as s3Plugin } from '@haven/remote-s3';
import type { RemoteStore } from '@haven/remote-sdk';
import { scratchDir, startAzurite, startS3rver } from '@haven/testing';
import { formatHeader, measureRemoteThroughput, type ThroughputRow } from './remote-throughput';

const MiB = 1024 * 1024;
const big = process.argv.includes('--big');
const only = process.argv
  .find((argument) => argument.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',');

interface Candidate {
  label: string;
  open: () => Promise<{ store: RemoteStore; stop: () => Promise<void> }>;
}

async function main(): Promise<void> {
  const scratch = await scratchDir('haven-bench-remotes-core-');
  const candidates: Candidate[] = [
    {
      label: 'local',
      open: async () => ({
        store: await localPlugin.create(
          { path: join(scratch.path, 'local-remote') },
          { name: 'bench-local' },
        ),
        stop: () => Promise.resolve(),
      }),
    },
    {
      label: 's3 (s3rver)',
      open: async () => {
        const server = await startS3rver({ buckets: ['bench'] });
        const store = await s3Plugin.create(
          {
            endpoint: server.endpoint,
            region: server.region,
            bucket: 'bench',
            accessKeyId: server.accessKeyId,
            secretAccessKey: server.secretAccessKey,
            forcePathStyle: true,
          },
          { name: 'bench-s3' },
        );
        return { store, stop: () => server.stop() };
      },
    },
    {
      label: 'azure (Azurite)',
      open: async () => {
        const server = await startAzurite();
        await BlobServiceClient.fromConnectionString(server.connectionString)
          .getContainerClient('bench')
          .create();
        const store = await azurePlugin.create(
          { connectionString: server.connectionString, container: 'bench' },
          { name: 'bench-azure' },
        );
        return { store, stop: () => server.stop() };
      },
    },
  ];
  const rows: ThroughputRow[] = [];
  process.stdout.write(`${formatHeader()}\n`);
  try {
    for (const candidate of candidates) {
      if (only !== undefined && !only.some((name) => candidate.label.startsWith(name))) continue;
      const { store, stop } = await candidate.open();
      try {
        rows.push(
          ...(await measureRemoteThroughput(candidate.label, store, {
            scratch: scratch.path,
            bytesPerRound: big ? 1024 * MiB : 128 * MiB,
          })),
        );
      } finally {
        await store.close();
        await stop();
      }
    }
  } finally {
    await scratch.cleanup();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
