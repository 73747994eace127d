import type { RemotePlugin } from '@haven/plugin-sdk';
import { Remote } from '@haven/remote-sdk';

import { NfsMountDriver } from './nfs-mount.driver';
import { NfsUserspaceDriver, type NfsUserspaceSettings } from './nfs-userspace.driver';

export interface NfsRemoteConfig {
  /** `userspace` (default): Haven's own NFSv3 client, no root needed. `mount`: kernel mount. */
  mode?: 'userspace' | 'mount';
  host: string;
  export: string;
  path?: string;
  nfsPort?: number;
  mountPort?: number;
  portmapPort?: number;
  uid?: number;
  gid?: number;
  ioSize?: number;
  concurrency?: number;
  stable?: 'unstable' | 'file-sync';
  timeoutMs?: number;
  overwriteGraceMs?: number;
  staleTemporaryMs?: number;
  /** mount mode: options for `mount -o` (allow-listed). */
  options?: string[];
  /** mount mode: folder holding Haven's mount points. */
  mountRoot?: string;
}

const port = { type: 'integer', minimum: 1, maximum: 65535 };
const id = { type: 'integer', minimum: 0, maximum: 4294967295 };

export const NFS_DEFAULTS = {
  uid: 0,
  gid: 0,
  ioSize: 1024 * 1024,
  concurrency: 8,
  stable: 'unstable',
  timeoutMs: 30_000,
  overwriteGraceMs: 60_000,
  staleTemporaryMs: 24 * 3600 * 1000,
  mountRoot: '/var/lib/haven/mounts',
} as const;

/** Builds the driver for a validated config (exported for tests and benchmarks). */
export function createNfsDriver(config: NfsRemoteConfig): NfsUserspaceDriver | NfsMountDriver {
  if (config.mode === 'mount') {
    return new NfsMountDriver({
      host: config.host,
      export: config.export,
      options: config.options ?? [],
      mountRoot: config.mountRoot ?? NFS_DEFAULTS.mountRoot,
      ...(config.path !== undefined ? { path: config.path } : {}),
    });
  }
  const settings: NfsUserspaceSettings = {
    host: config.host,
    export: config.export,
    uid: config.uid ?? NFS_DEFAULTS.uid,
    gid: config.gid ?? NFS_DEFAULTS.gid,
    ioSize: config.ioSize ?? NFS_DEFAULTS.ioSize,
    concurrency: config.concurrency ?? NFS_DEFAULTS.concurrency,
    stable: config.stable ?? NFS_DEFAULTS.stable,
    timeoutMs: config.timeoutMs ?? NFS_DEFAULTS.timeoutMs,
    overwriteGraceMs: config.overwriteGraceMs ?? NFS_DEFAULTS.overwriteGraceMs,
    staleTemporaryMs: config.staleTemporaryMs ?? NFS_DEFAULTS.staleTemporaryMs,
    ...(config.path !== undefined ? { path: config.path } : {}),
    ...(config.nfsPort !== undefined ? { nfsPort: config.nfsPort } : {}),
    ...(config.mountPort !== undefined ? { mountPort: config.mountPort } : {}),
    ...(config.portmapPort !== undefined ? { portmapPort: config.portmapPort } : {}),
  };
  return new NfsUserspaceDriver(settings);
}

/** NFS export as a remote: user-space NFSv3 client by default, or a kernel mount. */
export const plugin: RemotePlugin = {
  manifestVersion: 1,
  kind: 'remote',
  type: 'nfs',
  version: '0.1.0',
  description: 'An NFS export: built-in NFSv3 client (no root, no kernel NFS) or a kernel mount',
  configSchema: {
    type: 'object',
    properties: {
      mode: { type: 'string', enum: ['userspace', 'mount'], default: 'userspace' },
      host: { type: 'string', minLength: 1, maxLength: 255, description: 'NFS server host name or address' },
      export: {
        type: 'string',
        pattern: '^/',
        maxLength: 1024,
        description: 'Exported path, as the server lists it',
      },
      path: {
        type: 'string',
        pattern: '^[^/]',
        maxLength: 512,
        description: 'Folder inside the export for this remote (created when missing)',
      },
      nfsPort: { ...port, description: 'NFS port; asked from the portmapper when absent' },
      mountPort: { ...port, description: 'MOUNT port; asked from the portmapper when absent' },
      portmapPort: { ...port, description: 'Portmapper port (111)' },
      uid: { ...id, description: 'AUTH_SYS user id sent to the server (userspace mode)' },
      gid: { ...id, description: 'AUTH_SYS group id sent to the server (userspace mode)' },
      ioSize: { type: 'integer', minimum: 4096, maximum: 16777216, description: 'Bytes per READ/WRITE call' },
      concurrency: {
        type: 'integer',
        minimum: 1,
        maximum: 64,
        description: 'READ/WRITE calls in flight per object',
      },
      stable: {
        type: 'string',
        enum: ['unstable', 'file-sync'],
        description: 'WRITE stability (unstable + COMMIT)',
      },
      overwriteGraceMs: {
        type: 'integer',
        minimum: 0,
        maximum: 3600000,
        description: 'How long readers of an overwritten object can still read the old version',
      },
      staleTemporaryMs: {
        type: 'integer',
        minimum: 0,
        description: 'Listing removes temporaries of dead writers older than this (0: never)',
      },
      timeoutMs: {
        type: 'integer',
        minimum: 1000,
        maximum: 600000,
        description: 'Reply timeout per RPC call',
      },
      options: {
        type: 'array',
        items: { type: 'string', pattern: '^[a-z_]+(=[A-Za-z0-9.:]+)?$' },
        maxItems: 32,
        description: 'mount mode: allow-listed mount options (hard, vers=3, rsize=1048576, …)',
      },
      mountRoot: {
        type: 'string',
        pattern: '^/',
        description: 'mount mode: folder holding the mount points',
      },
    },
    required: ['host', 'export'],
    additionalProperties: false,
  },
  secretFields: [],
  create(config, context) {
    const driver = createNfsDriver(config as unknown as NfsRemoteConfig);
    return new Remote(driver, { name: context.name });
  },
};

export default plugin;
