/**
 * backup.full's archive upload to an S3 remote that is a round trip away, against raw PutObject
 * uploads of the same bytes in the same run. s3rver stands in for the object store, behind a TCP
 * proxy that delays every byte by half the round trip each way (bandwidth is not limited: what is
 * measured is how well each uploader hides latency).
 *
 * - baseline: the AWS SDK's PutObject of the same bytes in objects of the archive's segment size,
 *   8 requests in flight (what a tuned uploader does); then 4 (the S3 remote's default
 *   uploadConcurrency) and 1 in flight;
 * - Haven: storeSegmentsOnAll, the fan-out backup.full uses, to one plain S3 remote (its writes in
 *   flight: the remote's uploadConcurrency, `--upload-concurrency=N`, default 4), reading a
 *   generated stream of incompressible data (cut into segments and hashed as an export is).
 *
 *   node bin/run.js bench/jobs/archive-latency.bench.ts                # 256 MiB, 40 ms round trip
 *   node bin/run.js bench/jobs/archive-latency.bench.ts --mib=1024 --rtt-ms=80
 */
import { randomFillSync, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  ARCHIVE_SEGMENT_SIZE,
  ArchiveSealer,
  ArchiveStore,
  newArchiveId,
  type ArchiveManifest,
  type ArchiveSegment,
  storeSegmentsOnAll,
} from '@haven/job-backup-full';
import { plugin as s3Plugin } from '@haven/remote-s3';
import { startS3rver } from '@haven/testing';
import { startLatencyProxy } from '../remotes/latency.proxy';

const MiB = 1024 * 1024;

function numberArgument(name: string, fallback: number): number {
  const given = process.argv.find((argument) => argument.startsWith(`--${name}=`));
  if (given === undefined) return fallback;
  const value = Number(given.slice(name.length + 3));
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} must be a number ≥ 0, got ${given}`);
  return value;
}

const totalBytes = numberArgument('mib', 256) * MiB;
const roundTripMs = numberArgument('rtt-ms', 40);
const uploadConcurrency = numberArgument('upload-concurrency', 4);

/**
 * `totalBytes` of incompressible data in 1 MiB pieces (as an export arrives: not segment-aligned).
 * Async, not a Readable: the segmenter copies a piece before it asks for the next, so one buffer is
 * refilled (a Readable would read ahead into it).
 */
// eslint-disable-next-line @typescript-eslint/require-await
async function* source(): AsyncGenerator<Buffer> {
  const piece = Buffer.allocUnsafe(MiB);
  for (let sent = 0; sent < totalBytes; sent += MiB) {
    randomFillSync(piece);
    yield piece;
  }
}

async function rawPuts(client: S3Client, prefix: string, inFlight: number): Promise<number> {
  const objects = Math.ceil(totalBytes / ARCHIVE_SEGMENT_SIZE);
  const body = randomFillSync(Buffer.allocUnsafe(ARCHIVE_SEGMENT_SIZE));
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      for (let index = next++; index < objects; index = next++) {
        await client.send(new PutObjectCommand({ Bucket: 'bench', Key: `${prefix}/${index}`, Body: body }));
      }
    }),
  );
  return (performance.now() - start) / 1000;
}

async function rawGets(client: S3Client, prefix: string, inFlight: number): Promise<number> {
  const objects = Math.ceil(totalBytes / ARCHIVE_SEGMENT_SIZE);
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      for (let index = next++; index < objects; index = next++) {
        const answer = await client.send(
          new GetObjectCommand({ Bucket: 'bench', Key: `${prefix}/${index}` }),
        );
        await answer.Body?.transformToByteArray();
      }
    }),
  );
  return (performance.now() - start) / 1000;
}

async function main(): Promise<void> {
  const s3 = await startS3rver({ buckets: ['bench'] });
  const upstreamPort = Number(new URL(s3.endpoint).port);
  const proxy = await startLatencyProxy(upstreamPort, roundTripMs / 2);
  const client = new S3Client({
    endpoint: proxy.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });
  const store = await s3Plugin.create(
    {
      endpoint: proxy.endpoint,
      region: s3.region,
      bucket: 'bench',
      accessKeyId: s3.accessKeyId,
      secretAccessKey: s3.secretAccessKey,
      forcePathStyle: true,
      uploadConcurrency,
    },
    { name: 'bench-s3-latency' },
  );
  const mb = totalBytes / 1e6;
  const line = (label: string, seconds: number, baseline?: number): void => {
    const ratio = baseline === undefined ? '' : `  = ${(baseline / seconds).toFixed(2)}x the baseline`;
    process.stdout.write(
      `${label.padEnd(44)} ${seconds.toFixed(2).padStart(7)} s ${(mb / seconds).toFixed(0).padStart(5)} MB/s${ratio}\n`,
    );
  };
  process.stdout.write(
    `archive upload to s3rver ${roundTripMs} ms away: ${totalBytes / MiB} MiB in ${ARCHIVE_SEGMENT_SIZE / MiB} MiB segments\n`,
  );
  try {
    // Warm the connections and s3rver's bucket folder.
    await rawPuts(client, 'warm', 8);
    const baseline = await rawPuts(client, 'raw-8', 8);
    line('baseline: PutObject, 8 in flight', baseline);
    line('PutObject, 4 in flight', await rawPuts(client, 'raw-4', 4), baseline);
    line('PutObject, 1 in flight', await rawPuts(client, 'raw-1', 1), baseline);
    const archives = new ArchiveStore(store, ArchiveSealer.withKey(undefined));
    const destination = {
      archives,
      location: { vmUuid: randomUUID(), archiveId: newArchiveId(randomUUID()) },
      segments: [] as ArchiveSegment[],
    };
    const start = performance.now();
    await storeSegmentsOnAll(source(), [destination], {
      segmentSize: ARCHIVE_SEGMENT_SIZE,
    });
    line(
      `Haven: storeSegmentsOnAll, ${uploadConcurrency} in flight`,
      (performance.now() - start) / 1000,
      baseline,
    );

    process.stdout.write(`restore: reading the archive back\n`);
    const readBaseline = await rawGets(client, 'raw-8', 8);
    line('baseline: GetObject, 8 in flight', readBaseline);
    line('GetObject, 1 in flight', await rawGets(client, 'raw-8', 1), readBaseline);
    // What a restore reads: the segments in order, checked against the manifest's SHA-256.
    const manifest = {
      id: destination.location.archiveId,
      vm: { uuid: destination.location.vmUuid },
      segments: destination.segments,
    } as unknown as ArchiveManifest;
    const readStart = performance.now();
    let read = 0;
    for await (const segment of archives.createReadStream(manifest)) read += (segment as Buffer).length;
    if (read !== totalBytes) throw new Error(`read ${read} bytes back, not ${totalBytes}`);
    line('Haven: ArchiveStore.createReadStream', (performance.now() - readStart) / 1000, readBaseline);
  } finally {
    client.destroy();
    await store.close();
    await proxy.close();
    await s3.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
