import { isAbsolute } from 'node:path';
import type { RemotePlugin } from '@haven/plugin-sdk';
import { Remote } from '@haven/remote-sdk';
import { LocalDriver } from './local.driver';

export interface LocalRemoteConfig {
  /** Absolute path of the folder holding the backups. */
  path: string;
  /** Chunks written around the page cache when the file system allows (default true). */
  directWrites?: boolean;
}

/** Local folder (or any mounted file system) as a remote. */
export const plugin: RemotePlugin = {
  manifestVersion: 1,
  kind: 'remote',
  type: 'local',
  version: '0.1.0',
  description: 'A folder on this machine (local disk or a file system mounted here)',
  configSchema: {
    type: 'object',
    properties: {
      path: { type: 'string', minLength: 2, pattern: '^/', description: 'Absolute path of the folder' },
      directWrites: {
        type: 'boolean',
        default: true,
        description:
          'Write chunks around the page cache (O_DIRECT) where the file system allows it: less CPU, ' +
          'and a backup does not evict the cache of what runs beside it',
      },
    },
    required: ['path'],
    additionalProperties: false,
  },
  secretFields: [],
  create(config, context) {
    const path = config['path'];
    if (typeof path !== 'string' || !isAbsolute(path))
      throw new Error(`Remote "${context.name}" (local): setting "path" must be an absolute path.`);
    const directWrites = config['directWrites'];
    if (directWrites !== undefined && typeof directWrites !== 'boolean')
      throw new Error(`Remote "${context.name}" (local): setting "directWrites" must be true or false.`);
    return new Remote(new LocalDriver({ path, ...(directWrites !== undefined ? { directWrites } : {}) }), {
      name: context.name,
    });
  },
};

export default plugin;
