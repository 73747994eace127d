import type { RemotePlugin } from '@haven/plugin-sdk';
import { Remote } from '@haven/remote-sdk';
import { AzureDriver, type AzureDriverOptions } from './azure.driver';

/** The account key inside a connection string, so it can be scrubbed on its own too. */
function accountKeyOf(connectionString: string): string | undefined {
  return /(?:^|;)\s*AccountKey=([^;]+)/i.exec(connectionString)?.[1];
}

/** Azure Blob Storage (or Azurite): block blobs in a container, under an optional prefix. */
export const plugin: RemotePlugin = {
  manifestVersion: 1,
  kind: 'remote',
  type: 'azure',
  version: '0.1.0',
  description: 'Azure Blob Storage container (block blobs), or Azurite',
  configSchema: {
    type: 'object',
    properties: {
      connectionString: { type: 'string', minLength: 10, description: 'Storage account connection string' },
      accountName: { type: 'string', pattern: '^[a-z0-9]{3,24}$' },
      accountKey: { type: 'string', minLength: 1 },
      endpoint: {
        type: 'string',
        pattern: '^https?://[^\\s]+$',
        description: 'Blob service URL (https://ACCOUNT.blob.core.windows.net)',
      },
      container: {
        type: 'string',
        pattern: '^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$',
        description: 'Container name (3-63 lower-case letters, digits, single hyphens)',
      },
      prefix: { type: 'string', default: '', description: 'Folder inside the container' },
      blockSizeMiB: { type: 'integer', minimum: 1, maximum: 4000, default: 8 },
      uploadConcurrency: { type: 'integer', minimum: 1, maximum: 16, default: 4 },
    },
    required: ['container'],
    anyOf: [{ required: ['connectionString'] }, { required: ['accountName', 'accountKey', 'endpoint'] }],
    additionalProperties: false,
  },
  secretFields: ['connectionString', 'accountKey'],
  create(config, context) {
    const settings = config as unknown as AzureDriverOptions;
    const secrets: string[] = [];
    if ('connectionString' in settings) {
      secrets.push(settings.connectionString);
      const key = accountKeyOf(settings.connectionString);
      if (key !== undefined) secrets.push(key);
    } else {
      secrets.push(settings.accountKey);
    }
    return new Remote(new AzureDriver(settings), { name: context.name, secrets });
  },
};

export default plugin;
