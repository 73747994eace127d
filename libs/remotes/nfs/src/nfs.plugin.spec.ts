import { assertSchemaCompiles, validateAgainstSchema } from '@haven/plugin-sdk';

import { NfsMountDriver } from './nfs-mount.driver';
import { NfsUserspaceDriver } from './nfs-userspace.driver';
import defaultExport, { createNfsDriver, plugin } from './index';

describe('nfs plugin manifest', () => {
  it('is a remote plugin of type nfs, exported as plugin and default, without secrets', () => {
    expect(defaultExport).toBe(plugin);
    expect(plugin).toMatchObject({ manifestVersion: 1, kind: 'remote', type: 'nfs', secretFields: [] });
    expect(() => assertSchemaCompiles(plugin.configSchema)).not.toThrow();
  });

  it('accepts a minimal and a full user-space config', () => {
    expect(validateAgainstSchema(plugin.configSchema, { host: 'nas', export: '/srv/backups' })).toEqual([]);
    expect(
      validateAgainstSchema(plugin.configSchema, {
        mode: 'userspace',
        host: 'nas',
        export: '/srv/backups',
        path: 'haven/pool-a',
        nfsPort: 2049,
        mountPort: 20048,
        uid: 1000,
        gid: 1000,
        ioSize: 1048576,
        concurrency: 8,
        stable: 'file-sync',
        timeoutMs: 30000,
        overwriteGraceMs: 60000,
        staleTemporaryMs: 86400000,
      }),
    ).toEqual([]);
  });

  it('names every bad field', () => {
    const errors = validateAgainstSchema(plugin.configSchema, {
      export: 'relative',
      nfsPort: 70000,
      mode: 'fuse',
      options: ['hard;reboot'],
      password: 'x',
    });
    const fields = errors.map((error) => error.field).sort();
    expect(fields).toEqual(['export', 'host', 'mode', 'nfsPort', 'options.0', 'password']);
  });

  it('builds the user-space driver by default and the mount driver in mount mode', () => {
    expect(createNfsDriver({ host: 'nas', export: '/srv' })).toBeInstanceOf(NfsUserspaceDriver);
    const mounted = createNfsDriver({
      mode: 'mount',
      host: 'nas',
      export: '/srv',
      options: ['hard'],
      mountRoot: '/m',
    });
    expect(mounted).toBeInstanceOf(NfsMountDriver);
    expect((mounted as NfsMountDriver).mountPoint).toMatch(/^\/m\/nfs-[0-9a-f]{16}$/);
    expect(() => createNfsDriver({ mode: 'mount', host: 'nas', export: '/srv', options: ['exec'] })).toThrow(
      /"exec" is not supported/,
    );
  });
});
