import { PluginRegistry, validateAgainstSchema, type RemotePlugin } from '@haven/plugin-sdk';
import { plugin } from './s3.plugin';

const valid = {
  region: 'eu-west-1',
  bucket: 'haven-backups',
  accessKeyId: 'AKIA',
  secretAccessKey: 'secret',
};

describe('s3 remote plugin manifest', () => {
  it('registers as remote type "s3" with the secret key marked secret', () => {
    const registry = new PluginRegistry();
    registry.register(plugin, '@haven/remote-s3');
    expect(registry.remote('s3')).toBe(plugin);
    expect(plugin.secretFields).toEqual(['secretAccessKey']);
  });

  it('accepts a minimal and a full configuration', () => {
    expect(validateAgainstSchema(plugin.configSchema, { ...valid })).toEqual([]);
    expect(
      validateAgainstSchema(plugin.configSchema, {
        ...valid,
        endpoint: 'http://127.0.0.1:9000',
        prefix: 'pool-a',
        forcePathStyle: true,
        objectLock: { mode: 'COMPLIANCE', days: 30 },
        partSizeMiB: 16,
        uploadConcurrency: 8,
      }),
    ).toEqual([]);
  });

  it('names every bad field', () => {
    const errors = validateAgainstSchema(
      plugin.configSchema,
      {
        region: 'x',
        bucket: 'Bad_Bucket',
        accessKeyId: 'a',
        endpoint: 'ftp://x',
        objectLock: { mode: 'NONE', days: 0 },
      },
      'settings',
    );
    expect(errors.map((e) => e.field).sort()).toEqual(
      [
        'settings.bucket',
        'settings.endpoint',
        'settings.objectLock.days',
        'settings.objectLock.mode',
        'settings.secretAccessKey',
      ].sort(),
    );
  });

  it('asks for as many whole-object writes in flight as an upload has parts (uploadConcurrency)', async () => {
    const tuned = await plugin.create(
      { ...valid, endpoint: 'http://127.0.0.1:9', uploadConcurrency: 6 },
      { name: 'tuned' },
    );
    const plain = await plugin.create({ ...valid, endpoint: 'http://127.0.0.1:9' }, { name: 'default' });
    try {
      expect(tuned.writesInFlight).toBe(6);
      expect(plain.writesInFlight).toBe(4);
    } finally {
      await tuned.close();
      await plain.close();
    }
  });

  it('loads the AWS SDK only when the first S3 driver is made, not with the plugin', async () => {
    const loaded: string[] = [];
    let made: ReturnType<RemotePlugin['create']> | undefined;
    jest.isolateModules(() => {
      // A spy on module loading: the real SDK is what the driver gets.
      jest.doMock('@aws-sdk/client-s3', () => {
        loaded.push('@aws-sdk/client-s3');
        return jest.requireActual('@aws-sdk/client-s3');
      });
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const fresh = (require('./index') as typeof import('./index')).plugin;
      expect(loaded).toEqual([]);
      made = fresh.create({ ...valid, endpoint: 'http://127.0.0.1:9' }, { name: 'lazy' });
      expect(loaded).toEqual(['@aws-sdk/client-s3']);
    });
    // The driver opens no connection until used; closing it is all that is left to do.
    await (await made)?.close();
  });
});
