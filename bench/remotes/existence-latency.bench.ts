/**
 * The existence check of an incremental's base on an S3 remote a round trip away: RemoteStore.missing
 * (a HEAD per chunk) and missingChunks (what the base check runs: here, a listing per chunk
 * folder), against the AWS SDK's own HeadObject of the same keys and one listing of them, in the
 * same run. s3rver stands in for the object store, behind a proxy that delays every byte by half the
 * round trip each way; the keys are named as chunks are, 3,072 of them (an 8 GiB base of 2 MiB
 * chunks) unless said.
 *
 *   node bin/run.js bench/remotes/existence-latency.bench.ts [--keys 3072] [--rtt-ms 40]
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { OBJECT_STORE_STATS_IN_FLIGHT } from '@haven/remote-sdk';
import { plugin as s3Plugin } from '@haven/remote-s3';
import { chunkKey, missingChunks, SortedChunkIds } from '@haven/repository';
import { arg, runBench, timedInFlight } from '../bench.kit';
import { startDistantS3 } from './distant-s3';

const keyCount = arg('keys', 3072);
const roundTripMs = arg('rtt-ms', 40);

function line(label: string, seconds: number, baseline?: number): void {
  const ratio = baseline === undefined ? '' : `  = ${(seconds / baseline).toFixed(2)}x the baseline's time`;
  process.stdout.write(`${label.padEnd(46)} ${seconds.toFixed(2).padStart(6)} s${ratio}\n`);
}

async function main(): Promise<void> {
  const distant = await startDistantS3(roundTripMs, ['bench']);
  const { s3, endpoint, credentials } = distant;
  const region = s3.region;
  const direct = new S3Client({ endpoint: s3.endpoint, region, forcePathStyle: true, credentials });
  const far = new S3Client({ endpoint, region, forcePathStyle: true, credentials });
  const store = await s3Plugin.create(
    { endpoint, region, bucket: 'bench', ...credentials, forcePathStyle: true },
    { name: 'bench-existence' },
  );
  const ids = new Set(Array.from({ length: keyCount }, () => randomBytes(32).toString('hex')));
  const keys = [...ids].map((id) => chunkKey(id));
  const compactIds = SortedChunkIds.fromHex(ids);
  const heads = (inFlight: number): Promise<number> =>
    timedInFlight(keyCount, inFlight, (index) =>
      far.send(new HeadObjectCommand({ Bucket: 'bench', Key: keys[index] })),
    );
  try {
    // The objects are written directly (not through the proxy): only the checks are measured.
    await timedInFlight(keyCount, 32, (index) =>
      direct.send(new PutObjectCommand({ Bucket: 'bench', Key: keys[index], Body: Buffer.from('x') })),
    );
    process.stdout.write(`existence of ${keyCount} objects on s3rver ${roundTripMs} ms away\n`);
    for (let round = 1; round <= 2; round++) {
      const baseline = await heads(OBJECT_STORE_STATS_IN_FLIGHT);
      line(`round ${round}: baseline, HeadObject ${OBJECT_STORE_STATS_IN_FLIGHT} in flight`, baseline);
      line('HeadObject, 16 in flight', await heads(16), baseline);
      let start = performance.now();
      const missing = await store.missing(keys);
      if (missing.size !== 0) throw new Error(`${missing.size} of the keys were reported missing`);
      line("Haven: missing() (the driver's statsInFlight)", (performance.now() - start) / 1000, baseline);
      start = performance.now();
      let listed = 0;
      for await (const object of store.listAll('chunks/')) if (object.size > 0) listed++;
      if (listed !== keyCount) throw new Error(`the listing has ${listed} keys, not ${keyCount}`);
      line('one listing of chunks/ (1,000 keys a page)', (performance.now() - start) / 1000, baseline);
      start = performance.now();
      const absent = await missingChunks(store, compactIds);
      if (absent.size !== 0) throw new Error(`${absent.size} of the chunks were reported missing`);
      line('Haven: missingChunks (auto)', (performance.now() - start) / 1000, baseline);
    }
  } finally {
    direct.destroy();
    far.destroy();
    await store.close();
    await distant.stop();
  }
}

runBench(main);
