import { BlobServiceClient } from '@azure/storage-blob';
import { isRemoteError, type RemoteStore } from '@haven/remote-sdk';
import { TestPattern, runRemoteContractSuite } from '@haven/remote-sdk/testing';
import { startAzurite, type AzuriteHandle } from '@haven/testing';
import { plugin } from './azure.plugin';

async function createContainer(server: AzuriteHandle, name: string): Promise<void> {
  await BlobServiceClient.fromConnectionString(server.connectionString).getContainerClient(name).create();
}

function open(
  server: AzuriteHandle,
  container: string,
  overrides: Record<string, unknown> = {},
): Promise<RemoteStore> {
  return Promise.resolve(
    plugin.create(
      {
        accountName: server.accountName,
        accountKey: server.accountKey,
        endpoint: server.blobEndpoint,
        container,
        prefix: 'haven/backups',
        ...overrides,
      },
      { name: 'azure-test' },
    ),
  );
}

runRemoteContractSuite('azure (Azurite)', async () => {
  const server = await startAzurite();
  await createContainer(server, 'contract');
  const store = await plugin.create(
    { connectionString: server.connectionString, container: 'contract', prefix: 'p' },
    { name: 'azure-contract' },
  );
  return { store, cleanup: () => server.stop() };
});

describe('azure remote against Azurite: faults and settings', () => {
  let server: AzuriteHandle;

  beforeAll(async () => {
    // On disk, so a restart shows what the server really kept.
    server = await startAzurite({ inMemory: false });
    await createContainer(server, 'faults');
  }, 60_000);
  afterAll(() => server.stop());

  it('refuses a wrong account key with AUTH_FAILED, without the key in the message', async () => {
    const wrongKey = Buffer.from('definitely not the account key of devstoreaccount1').toString('base64');
    const store = await open(server, 'faults', { accountKey: wrongKey });
    const failure = await store.put('x', Buffer.from('x')).catch((e: unknown) => e);
    expect(isRemoteError(failure, 'AUTH_FAILED')).toBe(true);
    expect((failure as Error).message).toContain('Remote "azure-test" (azure): put "x" failed');
    expect((failure as Error).message).not.toContain(wrongKey);
    expect(JSON.stringify((failure as Error).cause)).not.toContain(wrongKey);
    await store.close();
  });

  it('refuses a wrong key given in a connection string, without the string in the message', async () => {
    const wrongKey = Buffer.from('another wrong key for the connection string').toString('base64');
    const connectionString = server.connectionString.replace(server.accountKey, wrongKey);
    const store = await plugin.create({ connectionString, container: 'faults' }, { name: 'azure-cs' });
    const failure = await store.list('').catch((e: unknown) => e);
    expect(isRemoteError(failure, 'AUTH_FAILED')).toBe(true);
    expect((failure as Error).message).not.toContain(wrongKey);
    await store.close();
  });

  it('names a missing container as a settings problem, not a missing object', async () => {
    const store = await open(server, 'no-such-container');
    await expect(store.put('x', Buffer.from('x'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await store.close();
  });

  it('stopping the server in the middle of a large put gives TRANSIENT and no visible object after restart', async () => {
    const store = await open(server, 'faults', { blockSizeMiB: 4, uploadConcurrency: 2 });
    await store.put('kept/before', Buffer.from('written before the crash'));
    const pattern = new TestPattern('azure-server-stopped');
    let killed: Promise<void> | undefined;
    const body = pattern.stream(96 << 20, {
      onBytes: (sent) => {
        // SIGTERM: Azurite then saves its metadata (a SIGKILL loses even the container), so
        // the restart shows what the server really kept of the interrupted upload.
        if (sent >= 30 << 20 && killed === undefined) killed = server.server.stop('SIGTERM');
      },
    });
    const error = await store.put('big/interrupted', body).catch((e: unknown) => e);
    await killed;
    expect(isRemoteError(error, 'TRANSIENT')).toBe(true);
    await server.server.start();
    expect((await store.getBuffer('kept/before')).toString()).toBe('written before the crash');
    expect(await store.exists('big/interrupted')).toBe(false);
    expect((await store.list('big/')).objects).toEqual([]);
    await store.close();
  }, 120_000);

  it('keeps a failed staged overwrite invisible and the previous blob whole', async () => {
    const store = await open(server, 'faults', { blockSizeMiB: 4 });
    const before = new TestPattern('before').bytes(0, 5000);
    await store.put('staged/object', before);
    const error = await store
      .put('staged/object', new TestPattern('after').stream(40 << 20, { failAfter: 22 << 20 }))
      .catch((e: unknown) => e);
    expect(isRemoteError(error)).toBe(true);
    expect((await store.getBuffer('staged/object')).equals(before)).toBe(true);
    expect((await store.list('staged/')).objects.map((o) => o.key)).toEqual(['staged/object']);
    await store.close();
  }, 120_000);
});
