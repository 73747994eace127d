import { assertSchemaCompiles, validateAgainstSchema } from '@haven/plugin-sdk';

import defaultExport, { plugin, smbDriverSettings } from './index';

describe('smb plugin manifest', () => {
  it('is a remote plugin of type smb, exported as plugin and default, with the password secret', () => {
    expect(defaultExport).toBe(plugin);
    expect(plugin).toMatchObject({
      manifestVersion: 1,
      kind: 'remote',
      type: 'smb',
      secretFields: ['password'],
    });
    expect(() => assertSchemaCompiles(plugin.configSchema)).not.toThrow();
  });

  it('accepts the documented config and fills defaults', () => {
    const config = {
      host: 'nas',
      share: 'backups',
      domain: 'CORP',
      username: 'haven',
      password: 's3cret',
      prefix: 'pool-a',
    };
    expect(validateAgainstSchema(plugin.configSchema, { ...config })).toEqual([]);
    expect(smbDriverSettings(config)).toMatchObject({
      port: 445,
      ioSize: 1048576,
      concurrency: 8,
      domain: 'CORP',
    });
    expect(smbDriverSettings({ host: 'nas', share: 's', username: 'u', password: 'p' }).domain).toBe('');
  });

  it('names every bad field', () => {
    const errors = validateAgainstSchema(plugin.configSchema, {
      host: 'nas',
      share: 'a\\b',
      port: 0,
      user: 'x',
    });
    expect(errors.map((error) => error.field).sort()).toEqual([
      'password',
      'port',
      'share',
      'user',
      'username',
    ]);
  });

  it('keeps the password out of error messages of the remote it creates', async () => {
    const store = await Promise.resolve(
      plugin.create(
        { host: '127.0.0.1', port: 1, share: 's', username: 'u', password: 'Very-Secret-1' },
        { name: 'smb-closed-port' },
      ),
    );
    try {
      const failure = await store.stat('x').catch((error: unknown) => error as Error);
      expect(failure).toMatchObject({ code: 'TRANSIENT' });
      expect((failure as Error).message).toContain('smb-closed-port');
      expect((failure as Error).message).not.toContain('Very-Secret-1');
    } finally {
      await store.close();
    }
  }, 60_000);
});
