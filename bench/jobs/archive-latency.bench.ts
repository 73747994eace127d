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
 *   flight: the remote's uploadConcurrency, `--upload-concurrency N`, default 4), reading a
 *   generated stream of incompressible data (cut into segments and hashed as an export is);
 * - then the read back: GetObject (8 and 1 in flight) against ArchiveStore.createReadStream, what a
 *   restore and the archive download read.
 *
 *   node bin/run.js bench/jobs/archive-latency.bench.ts                # 256 MiB, 40 ms round trip
 *   node bin/run.js bench/jobs/archive-latency.bench.ts --mib 1024 --rtt-ms 80
 */
import { randomFillSync, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  ARCHIVE_SEGMENT_SIZE,
  ArchiveSealer,
  ArchiveStore,
  newArchiveId,
  storeSegmentsOnAll,
  type ArchiveManifest,
  type SegmentDestination,
} from '@haven/job-backup-full';
import { plugin as s3Plugin } from '@haven/remote-s3';
import { arg, runBench, timedInFlight } from '../bench.kit';
import { startDistantS3 } from '../remotes/distant-s3';

const MiB = 1024 * 1024;
const totalBytes = arg('mib', 256) * MiB;
const roundTripMs = arg('rtt-ms', 40);
const uploadConcurrency = arg('upload-concurrency', 4);
const objects = Math.ceil(totalBytes / ARCHIVE_SEGMENT_SIZE);

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

function line(label: string, seconds: number, baseline?: number): void {
  const ratio = baseline === undefined ? '' : `  = ${(baseline / seconds).toFixed(2)}x the baseline`;
  const rate = (totalBytes / 1e6 / seconds).toFixed(0);
  process.stdout.write(
    `${label.padEnd(44)} ${seconds.toFixed(2).padStart(7)} s ${rate.padStart(5)} MB/s${ratio}\n`,
  );
}

async function main(): Promise<void> {
  const distant = await startDistantS3(roundTripMs, ['bench']);
  const { s3, endpoint, credentials } = distant;
  const client = new S3Client({ endpoint, region: s3.region, forcePathStyle: true, credentials });
  const store = await s3Plugin.create(
    { endpoint, region: s3.region, bucket: 'bench', ...credentials, forcePathStyle: true, uploadConcurrency },
    { name: 'bench-s3-latency' },
  );
  const body = randomFillSync(Buffer.allocUnsafe(ARCHIVE_SEGMENT_SIZE));
  const puts = (prefix: string, inFlight: number): Promise<number> =>
    timedInFlight(objects, inFlight, (index) =>
      client.send(new PutObjectCommand({ Bucket: 'bench', Key: `${prefix}/${index}`, Body: body })),
    );
  const gets = (prefix: string, inFlight: number): Promise<number> =>
    timedInFlight(objects, inFlight, async (index) => {
      const answer = await client.send(new GetObjectCommand({ Bucket: 'bench', Key: `${prefix}/${index}` }));
      await answer.Body?.transformToByteArray();
    });
  process.stdout.write(
    `archive upload to s3rver ${roundTripMs} ms away: ${totalBytes / MiB} MiB in ${ARCHIVE_SEGMENT_SIZE / MiB} MiB segments\n`,
  );
  try {
    // Warm the connections and s3rver's bucket folder.
    await puts('warm', 8);
    const baseline = await puts('raw-8', 8);
    line('baseline: PutObject, 8 in flight', baseline);
    line('PutObject, 4 in flight', await puts('raw-4', 4), baseline);
    line('PutObject, 1 in flight', await puts('raw-1', 1), baseline);
    const archives = new ArchiveStore(store, ArchiveSealer.withKey(undefined));
    const destination: SegmentDestination = {
      archives,
      location: { vmUuid: randomUUID(), archiveId: newArchiveId(randomUUID()) },
      segments: [],
    };
    const start = performance.now();
    await storeSegmentsOnAll(source(), [destination], { segmentSize: ARCHIVE_SEGMENT_SIZE });
    line(
      `Haven: storeSegmentsOnAll, ${uploadConcurrency} in flight`,
      (performance.now() - start) / 1000,
      baseline,
    );

    process.stdout.write(`restore: reading the archive back\n`);
    const readBaseline = await gets('raw-8', 8);
    line('baseline: GetObject, 8 in flight', readBaseline);
    line('GetObject, 1 in flight', await gets('raw-8', 1), readBaseline);
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
    await distant.stop();
  }
}

runBench(main);
