import { PluginRegistry, validateAgainstSchema, type RemotePlugin } from '@haven/plugin-sdk';
import { plugin } from './azure.plugin';

describe('azure remote plugin manifest', () => {
  it('registers as remote type "azure" with both credential forms marked secret', () => {
    const registry = new PluginRegistry();
    registry.register(plugin, '@haven/remote-azure');
    expect(registry.remote('azure')).toBe(plugin);
    expect(plugin.secretFields).toEqual(['connectionString', 'accountKey']);
  });

  it('accepts a connection string or account name + key + endpoint', () => {
    expect(
      validateAgainstSchema(plugin.configSchema, {
        connectionString: 'DefaultEndpointsProtocol=https;AccountName=a;AccountKey=b;',
        container: 'backups',
      }),
    ).toEqual([]);
    expect(
      validateAgainstSchema(plugin.configSchema, {
        accountName: 'havenstore',
        accountKey: 'a2V5',
        endpoint: 'https://havenstore.blob.core.windows.net',
        container: 'backups',
        prefix: 'pool-a',
      }),
    ).toEqual([]);
  });

  it('names the missing credentials and a bad container name', () => {
    const fields = validateAgainstSchema(plugin.configSchema, {
      container: 'Bad--Name',
      accountName: 'havenstore',
    }).map((e) => e.field);
    expect(fields).toContain('container');
    expect(fields).toContain('connectionString');
    expect(fields).toContain('accountKey');
    expect(fields).toContain('endpoint');
  });

  it('loads the Azure SDK only when the first Azure driver is made, not with the plugin', async () => {
    const loaded: string[] = [];
    let made: ReturnType<RemotePlugin['create']> | undefined;
    jest.isolateModules(() => {
      // A spy on module loading: the real SDK is what the driver gets.
      jest.doMock('@azure/storage-blob', () => {
        loaded.push('@azure/storage-blob');
        return jest.requireActual('@azure/storage-blob');
      });
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const fresh = (require('./index') as typeof import('./index')).plugin;
      expect(loaded).toEqual([]);
      made = fresh.create(
        {
          connectionString:
            'DefaultEndpointsProtocol=http;AccountName=a;AccountKey=Yg==;BlobEndpoint=http://127.0.0.1:9/a;',
          container: 'lazy',
        },
        { name: 'lazy' },
      );
      expect(loaded).toEqual(['@azure/storage-blob']);
    });
    // The driver opens no connection until used; closing it is all that is left to do.
    await (await made)?.close();
  });
});
