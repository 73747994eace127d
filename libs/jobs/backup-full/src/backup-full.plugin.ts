import type { JobPlugin } from '@haven/plugin-sdk';

/**
 * `backup.full`: each run exports every selected VM as an XVA, compressed on the host, and stores
 * it as an independent archive (sealed segments on an encrypted remote). No run depends on another.
 */
export const plugin: JobPlugin = {
  manifestVersion: 1,
  kind: 'job',
  type: 'backup.full',
  version: '0.1.0',
  description: 'Full VM export (XVA) to one or more remotes on every run',
  taskTypes: ['backup.full.vm'],
  configSchema: {
    type: 'object',
    properties: {
      compression: {
        enum: ['none', 'gzip', 'zstd'],
        default: 'zstd',
        description: 'Host-side XVA compression',
      },
      concurrency: {
        type: 'integer',
        minimum: 1,
        maximum: 64,
        default: 2,
        description: 'VMs backed up in parallel',
      },
      timeoutMinutes: { type: 'integer', minimum: 1, maximum: 10080, description: 'Per-VM time limit' },
      retries: {
        type: 'integer',
        minimum: 0,
        maximum: 10,
        default: 1,
        description: 'Retries of a failed VM',
      },
      snapshotNameTemplate: {
        type: 'string',
        minLength: 1,
        maxLength: 200,
        default: '[haven] {job} {vm} {date}',
      },
    },
    additionalProperties: false,
  },
};

export default plugin;
