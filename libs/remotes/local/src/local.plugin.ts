import { isAbsolute } from 'node:path';
import type { RemotePlugin } from '@haven/plugin-sdk';
import { Remote } from '@haven/remote-sdk';
import { LocalDriver } from './local.driver';

export interface LocalRemoteConfig {
  /** Absolute path of the folder holding the backups. */
  path: string;
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
    },
    required: ['path'],
    additionalProperties: false,
  },
  secretFields: [],
  create(config, context) {
    const path = config['path'];
    if (typeof path !== 'string' || !isAbsolute(path))
      throw new Error(`Remote "${context.name}" (local): setting "path" must be an absolute path.`);
    return new Remote(new LocalDriver({ path }), { name: context.name });
  },
};

export default plugin;
