import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { isRemoteError, type RemoteStore } from '@haven/remote-sdk';
import { TestPattern, runRemoteContractSuite } from '@haven/remote-sdk/testing';
import { startS3rver, uniqueName, type S3rverHandle } from '@haven/testing';
import { plugin } from './s3.plugin';

function open(
  server: S3rverHandle,
  bucket: string,
  overrides: Record<string, unknown> = {},
): Promise<RemoteStore> {
  return Promise.resolve(
    plugin.create(
      {
        endpoint: server.endpoint,
        region: server.region,
        bucket,
        prefix: 'haven/backups',
        accessKeyId: server.accessKeyId,
        secretAccessKey: server.secretAccessKey,
        forcePathStyle: true,
        ...overrides,
      },
      { name: 's3-test' },
    ),
  );
}

runRemoteContractSuite(
  's3 (s3rver)',
  async () => {
    const server = await startS3rver({ buckets: ['contract'] });
    const store = await open(server, 'contract');
    return { store, cleanup: () => server.stop() };
  },
  {
    nonAtomicPutIfAbsent: 's3rver ignores If-None-Match on PUT',
    serverWritesInPlace: 's3rver writes the object file while the body arrives',
    serverListOrder: 's3rver walks folders, so "a-b" comes after "a/x"',
  },
);

describe('s3 remote against s3rver: faults and settings', () => {
  let server: S3rverHandle;

  beforeAll(async () => {
    server = await startS3rver({ buckets: ['faults'] });
  }, 60_000);
  afterAll(() => server.stop());

  // s3rver 3.7 checks the access key id but not SigV4 signatures, so a wrong *secret* cannot be
  // refused by it; its mapping (SignatureDoesNotMatch -> AUTH_FAILED) is covered in s3.driver.spec.ts.
  it('refuses an unknown access key with AUTH_FAILED (InvalidAccessKeyId), without the secret in the message', async () => {
    const secret = 'a-secret-that-must-not-leak-42';
    const store = await open(server, 'faults', { accessKeyId: 'NOBODY', secretAccessKey: secret });
    let failure: unknown;
    try {
      await store.put('x', Buffer.from('x'));
    } catch (error) {
      failure = error;
    }
    expect(isRemoteError(failure, 'AUTH_FAILED')).toBe(true);
    expect((failure as Error).message).toContain('InvalidAccessKeyId');
    expect((failure as Error).message).toContain('Remote "s3-test" (s3): put "x" failed');
    expect((failure as Error).message).not.toContain(secret);
    expect(JSON.stringify((failure as Error).cause)).not.toContain(secret);
    await expect(store.list('')).rejects.toMatchObject({ code: 'AUTH_FAILED' });
    await store.close();
  });

  it('names a missing bucket as a settings problem, not a missing object', async () => {
    const store = await open(server, 'no-such-bucket');
    await expect(store.delete('x')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await store.close();
  });

  it('gives TRANSIENT when the server is unreachable, after retrying', async () => {
    const store = await plugin.create(
      {
        endpoint: 'http://127.0.0.1:9',
        region: 'us-east-1',
        bucket: 'faults',
        accessKeyId: 'a',
        secretAccessKey: 'b',
      },
      { name: 'down' },
    );
    const error = await store.stat('x').catch((e: unknown) => e);
    expect(isRemoteError(error, 'TRANSIENT')).toBe(true);
    expect((error as Error).message).toMatch(/after \d+ attempts/);
    await store.close();
  }, 60_000);

  it('stopping the server in the middle of a large put gives TRANSIENT and no visible object after restart', async () => {
    const store = await open(server, 'faults', { partSizeMiB: 5, uploadConcurrency: 2 });
    const pattern = new TestPattern('server-stopped');
    let killed: Promise<void> | undefined;
    const body = pattern.stream(96 << 20, {
      onBytes: (sent) => {
        if (sent >= 30 << 20 && killed === undefined) killed = server.server.stop('SIGKILL');
      },
    });
    const error = await store.put('big/interrupted', body).catch((e: unknown) => e);
    await killed;
    expect(isRemoteError(error, 'TRANSIENT')).toBe(true);
    await server.server.start();
    expect(await store.exists('big/interrupted')).toBe(false);
    expect((await store.list('big/')).objects).toEqual([]);
    await store.close();
  }, 120_000);

  // s3rver implements neither AbortMultipartUpload nor ListMultipartUploads (it answers
  // MethodNotAllowed / NotImplemented), so that the abort reaches a real server is not verified here.
  it('keeps a failed multipart overwrite invisible and the previous object whole', async () => {
    const store = await open(server, 'faults', { partSizeMiB: 5 });
    const pattern = new TestPattern('multipart-failing');
    await store.put('mp/object', pattern.bytes(0, 1000));
    const error = await store
      .put('mp/object', new TestPattern('other').stream(40 << 20, { failAfter: 22 << 20 }))
      .catch((e: unknown) => e);
    expect(isRemoteError(error)).toBe(true);
    expect((await store.getBuffer('mp/object')).equals(pattern.bytes(0, 1000))).toBe(true);
    expect((await store.list('mp/')).objects.map((o) => o.key)).toEqual(['mp/object']);
    await store.close();
  }, 120_000);

  it('writes with Object Lock settings (s3rver accepts and ignores the lock headers)', async () => {
    const client = new S3Client({
      endpoint: server.endpoint,
      region: server.region,
      forcePathStyle: true,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    });
    const bucket = uniqueName('locked').replace(/_/g, '-');
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
    client.destroy();
    const store = await open(server, bucket, { objectLock: { mode: 'GOVERNANCE', days: 1 }, partSizeMiB: 5 });
    const pattern = new TestPattern('locked');
    await store.put('small', pattern.bytes(0, 1000));
    await store.put('large', pattern.stream(12 << 20));
    expect((await store.getBuffer('small')).equals(pattern.bytes(0, 1000))).toBe(true);
    expect((await store.stat('large')).size).toBe(12 << 20);
    await store.close();
  });
});
