import { PluginRegistry, validateAgainstSchema } from '@haven/plugin-sdk';
import { plugin } from './local.plugin';

describe('local remote plugin manifest', () => {
  it('registers as remote type "local"', () => {
    const registry = new PluginRegistry();
    registry.register(plugin, '@haven/remote-local');
    expect(registry.remote('local')).toBe(plugin);
  });

  it('accepts an absolute path and names bad fields', () => {
    expect(validateAgainstSchema(plugin.configSchema, { path: '/srv/backups' })).toEqual([]);
    expect(
      validateAgainstSchema(plugin.configSchema, { path: 'relative' }, 'settings').map((e) => e.field),
    ).toEqual(['settings.path']);
    expect(
      validateAgainstSchema(plugin.configSchema, { paht: '/x' })
        .map((e) => e.field)
        .sort(),
    ).toEqual(['paht', 'path']);
  });

  it('takes directWrites as a boolean, and names it otherwise', () => {
    expect(validateAgainstSchema(plugin.configSchema, { path: '/srv/backups', directWrites: false })).toEqual(
      [],
    );
    expect(
      validateAgainstSchema(
        plugin.configSchema,
        { path: '/srv/backups', directWrites: 'yes' },
        'settings',
      ).map((e) => e.field),
    ).toEqual(['settings.directWrites']);
    expect(() => plugin.create({ path: '/srv/backups', directWrites: 'yes' }, { name: 'r' })).toThrow(
      /"directWrites" must be true or false/,
    );
  });

  it('has no secret fields', () => {
    expect(plugin.secretFields).toEqual([]);
  });
});
