import type { RemotePlugin } from '@haven/plugin-sdk';
import { Remote } from '@haven/remote-sdk';

import { SmbDriver, type SmbDriverSettings } from './smb.driver';

export interface SmbRemoteConfig {
  host: string;
  port?: number;
  share: string;
  domain?: string;
  username: string;
  password: string;
  prefix?: string;
  ioSize?: number;
  concurrency?: number;
  timeoutMs?: number;
  staleTemporaryMs?: number;
}

export const SMB_DEFAULTS = {
  port: 445,
  domain: '',
  ioSize: 1024 * 1024,
  concurrency: 8,
  timeoutMs: 30_000,
  staleTemporaryMs: 24 * 3600 * 1000,
} as const;

export function smbDriverSettings(config: SmbRemoteConfig): SmbDriverSettings {
  return {
    host: config.host,
    port: config.port ?? SMB_DEFAULTS.port,
    share: config.share,
    domain: config.domain ?? SMB_DEFAULTS.domain,
    username: config.username,
    password: config.password,
    ioSize: config.ioSize ?? SMB_DEFAULTS.ioSize,
    concurrency: config.concurrency ?? SMB_DEFAULTS.concurrency,
    timeoutMs: config.timeoutMs ?? SMB_DEFAULTS.timeoutMs,
    staleTemporaryMs: config.staleTemporaryMs ?? SMB_DEFAULTS.staleTemporaryMs,
    ...(config.prefix !== undefined ? { prefix: config.prefix } : {}),
  };
}

/** A Windows / Samba share as a remote, over Haven's own SMB 2.1 client (NTLMv2). */
export const plugin: RemotePlugin = {
  manifestVersion: 1,
  kind: 'remote',
  type: 'smb',
  version: '0.1.0',
  description: 'An SMB share (Windows, Samba, NAS) with user name, password and domain',
  configSchema: {
    type: 'object',
    properties: {
      host: { type: 'string', minLength: 1, maxLength: 255, description: 'Server host name or address' },
      port: { type: 'integer', minimum: 1, maximum: 65535, default: 445 },
      share: {
        type: 'string',
        minLength: 1,
        maxLength: 80,
        pattern: '^[^\\\\/]+$',
        description: 'Share name',
      },
      domain: {
        type: 'string',
        maxLength: 255,
        description: 'Domain or workgroup of the user (may be empty)',
      },
      username: { type: 'string', minLength: 1, maxLength: 255 },
      password: { type: 'string', maxLength: 1024 },
      prefix: {
        type: 'string',
        maxLength: 512,
        pattern: '^[^\\\\]*$',
        description: 'Folder inside the share',
      },
      ioSize: {
        type: 'integer',
        minimum: 4096,
        maximum: 8388608,
        description: 'Bytes per READ/WRITE request',
      },
      concurrency: { type: 'integer', minimum: 1, maximum: 64, description: 'Requests in flight per object' },
      staleTemporaryMs: {
        type: 'integer',
        minimum: 0,
        description: 'Listing removes temporaries of dead writers older than this (0: never)',
      },
      timeoutMs: {
        type: 'integer',
        minimum: 1000,
        maximum: 600000,
        description: 'Reply timeout per request',
      },
    },
    required: ['host', 'share', 'username', 'password'],
    additionalProperties: false,
  },
  secretFields: ['password'],
  create(config, context) {
    const settings = smbDriverSettings(config as unknown as SmbRemoteConfig);
    return new Remote(new SmbDriver(settings), { name: context.name, secrets: [settings.password] });
  },
};

export default plugin;
