/**
 * The existence check of an incremental's base (RemoteStore.missing) on an S3 remote a round trip
 * away, against the AWS SDK's own HeadObject of the same keys and one listing of them, in the same
 * run. s3rver stands in for the object store, behind a proxy that delays every byte by half the
 * round trip each way; the keys are named as chunks are, 3,072 of them (an 8 GiB base of 2 MiB
 * chunks) unless said.
 *
 *   node bin/run.js bench/remotes/existence-latency.bench.ts [--keys=3072] [--rtt-ms=40]
 */
import { performance } from 'node:perf_hooks';
import { HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { OBJECT_STORE_STATS_IN_FLIGHT } from '@haven/remote-sdk';
import { plugin as s3Plugin } from '@haven/remote-s3';
import { startS3rver } from '@haven/testing';
import { startLatencyProxy } from './latency.proxy';

function numberArgument(name: string, fallback: number): number {
  const given = process.argv.find((argument) => argument.startsWith(`--${name}=`));
  if (given === undefined) return fallback;
  const value = Number(given.slice(name.length + 3));
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} must be a number ≥ 0, got ${given}`);
  return value;
}

const keyCount = numberArgument('keys', 3072);
const roundTripMs = numberArgument('rtt-ms', 40);

async function eachAtOnce(
  keys: readonly string[],
  inFlight: number,
  work: (key: string) => Promise<unknown>,
): Promise<number> {
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      for (let index = next++; index < keys.length; index = next++) await work(keys[index] ?? '');
    }),
  );
  return (performance.now() - start) / 1000;
}

async function main(): Promise<void> {
  const s3 = await startS3rver({ buckets: ['bench'] });
  const proxy = await startLatencyProxy(Number(new URL(s3.endpoint).port), roundTripMs / 2);
  const credentials = { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey };
  const direct = new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials,
  });
  const distant = new S3Client({
    endpoint: proxy.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials,
  });
  const store = await s3Plugin.create(
    { endpoint: proxy.endpoint, region: s3.region, bucket: 'bench', ...credentials, forcePathStyle: true },
    { name: 'bench-existence' },
  );
  const keys = Array.from(
    { length: keyCount },
    (_, index) =>
      `chunks/${(index % 256).toString(16).padStart(2, '0')}/${index.toString(16).padStart(64, '0')}`,
  );
  const line = (label: string, seconds: number, baseline?: number): void => {
    const ratio = baseline === undefined ? '' : `  = ${(seconds / baseline).toFixed(2)}x the baseline's time`;
    process.stdout.write(`${label.padEnd(46)} ${seconds.toFixed(2).padStart(6)} s${ratio}\n`);
  };
  try {
    // The objects are written directly (not through the proxy): only the checks are measured.
    await eachAtOnce(keys, 32, (key) =>
      direct.send(new PutObjectCommand({ Bucket: 'bench', Key: key, Body: Buffer.from('x') })),
    );
    process.stdout.write(`existence of ${keyCount} objects on s3rver ${roundTripMs} ms away\n`);
    for (let round = 1; round <= 2; round++) {
      const baseline = await eachAtOnce(keys, OBJECT_STORE_STATS_IN_FLIGHT, (key) =>
        distant.send(new HeadObjectCommand({ Bucket: 'bench', Key: key })),
      );
      line(`round ${round}: baseline, HeadObject ${OBJECT_STORE_STATS_IN_FLIGHT} in flight`, baseline);
      line(
        'HeadObject, 16 in flight',
        await eachAtOnce(keys, 16, (key) =>
          distant.send(new HeadObjectCommand({ Bucket: 'bench', Key: key })),
        ),
        baseline,
      );
      let start = performance.now();
      const missing = await store.missing(keys);
      if (missing.size !== 0) throw new Error(`${missing.size} of the keys were reported missing`);
      line("Haven: missing() (the driver's statsInFlight)", (performance.now() - start) / 1000, baseline);
      start = performance.now();
      let listed = 0;
      for await (const object of store.listAll('chunks/')) if (object.size > 0) listed++;
      if (listed !== keyCount) throw new Error(`the listing has ${listed} keys, not ${keyCount}`);
      line('one listing of chunks/ (1,000 keys a page)', (performance.now() - start) / 1000, baseline);
    }
  } finally {
    direct.destroy();
    distant.destroy();
    await store.close();
    await proxy.close();
    await s3.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
