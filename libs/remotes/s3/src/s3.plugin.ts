import type { RemotePlugin } from '@haven/plugin-sdk';
import { Remote } from '@haven/remote-sdk';
import { S3Driver, type S3ObjectLockSettings } from './s3.driver';

export interface S3RemoteConfig {
  endpoint?: string;
  region: string;
  bucket: string;
  prefix?: string;
  accessKeyId: string;
  secretAccessKey: string;
  forcePathStyle?: boolean;
  objectLock?: S3ObjectLockSettings;
  partSizeMiB?: number;
  uploadConcurrency?: number;
}

/** S3 and S3-compatible object storage (AWS, MinIO, Ceph RGW, Wasabi, …). */
export const plugin: RemotePlugin = {
  manifestVersion: 1,
  kind: 'remote',
  type: 's3',
  version: '0.1.0',
  description: 'S3 or S3-compatible object storage (bucket and optional prefix)',
  configSchema: {
    type: 'object',
    properties: {
      endpoint: {
        type: 'string',
        pattern: '^https?://[^\\s/]+(/.*)?$',
        description: 'Server URL for S3-compatible storage; omit for AWS',
      },
      region: { type: 'string', minLength: 1, default: 'us-east-1' },
      bucket: {
        type: 'string',
        pattern: '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$',
        description: 'Bucket name (3-63 lower-case letters, digits, dots, hyphens)',
      },
      prefix: { type: 'string', pattern: '^[^\\\\]*$', default: '', description: 'Folder inside the bucket' },
      accessKeyId: { type: 'string', minLength: 1 },
      secretAccessKey: { type: 'string', minLength: 1 },
      forcePathStyle: {
        type: 'boolean',
        description: 'Path-style URLs; default true when an endpoint is set',
      },
      objectLock: {
        type: 'object',
        properties: {
          mode: { enum: ['GOVERNANCE', 'COMPLIANCE'] },
          days: { type: 'integer', minimum: 1, maximum: 36500 },
        },
        required: ['mode', 'days'],
        additionalProperties: false,
        description:
          'Lock every object written for this many days (the bucket must have Object Lock enabled)',
      },
      partSizeMiB: { type: 'integer', minimum: 5, maximum: 512, default: 8 },
      uploadConcurrency: { type: 'integer', minimum: 1, maximum: 16, default: 4 },
    },
    required: ['region', 'bucket', 'accessKeyId', 'secretAccessKey'],
    additionalProperties: false,
  },
  secretFields: ['secretAccessKey'],
  create(config, context) {
    const settings = config as unknown as S3RemoteConfig;
    const driver = new S3Driver(settings);
    return new Remote(driver, { name: context.name, secrets: [settings.secretAccessKey] });
  },
};

export default plugin;
