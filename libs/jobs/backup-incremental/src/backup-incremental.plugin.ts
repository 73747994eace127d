import type { JobPlugin } from '@haven/plugin-sdk';

/**
 * `backup.incremental`: snapshot, then only the blocks changed since the previous backup go to the
 * deduplicated repository; the first run (and any run smart mode decides) is full.
 */
export const plugin: JobPlugin = {
  manifestVersion: 1,
  kind: 'job',
  type: 'backup.incremental',
  version: '0.1.0',
  description: 'Incremental VM backup into the deduplicated, encrypted repository',
  taskTypes: ['backup.incremental.vm'],
  configSchema: {
    type: 'object',
    properties: {
      compression: {
        enum: ['none', 'gzip', 'zstd'],
        default: 'zstd',
        description: 'Per-chunk compression in the repository',
      },
      compressionLevel: { type: 'integer', minimum: 1, maximum: 19, default: 1 },
      concurrency: {
        type: 'integer',
        minimum: 1,
        maximum: 64,
        default: 2,
        description: 'VMs backed up in parallel',
      },
      diskConcurrency: {
        type: 'integer',
        minimum: 1,
        maximum: 16,
        default: 1,
        description: 'Disks of one VM in parallel',
      },
      useCbt: {
        type: 'boolean',
        default: false,
        description: 'Use changed-block tracking where the host has it',
      },
      fullInterval: {
        type: 'integer',
        minimum: 0,
        maximum: 1000,
        default: 0,
        description: 'Force a full run after this many incrementals (0: never)',
      },
      timeoutMinutes: { type: 'integer', minimum: 1, maximum: 10080 },
      retries: { type: 'integer', minimum: 0, maximum: 10, default: 1 },
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
