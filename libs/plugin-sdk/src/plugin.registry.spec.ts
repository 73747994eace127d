import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PluginLoadError, PluginRegistry, UnknownPluginTypeError } from './plugin.registry';
import { validateAgainstSchema } from './config-validation';

const repoRoot = resolve(__dirname, '../../..');

function pluginFile(source: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'haven-plugin-'));
  const file = join(dir, 'index.js');
  writeFileSync(file, source);
  return file;
}

describe('PluginRegistry', () => {
  it('loads an out-of-tree plugin from a path and validates settings against its schema', () => {
    const registry = PluginRegistry.load(['./examples/plugins/example-job'], repoRoot);
    const plugin = registry.job('example.echo');
    expect(plugin.version).toBe('1.0.0');
    expect(registry.list()).toEqual([
      expect.objectContaining({
        kind: 'job',
        type: 'example.echo',
        source: './examples/plugins/example-job',
      }),
    ]);
    expect(validateAgainstSchema(plugin.configSchema, { message: 'hi' })).toEqual([]);
    expect(validateAgainstSchema(plugin.configSchema, { steps: 999, colour: 'red' }, 'settings')).toEqual(
      expect.arrayContaining([
        { field: 'settings.message', message: 'is required' },
        { field: 'settings.steps', message: 'must be <= 100' },
        { field: 'settings.colour', message: 'is not a known setting' },
      ]),
    );
  });

  it('loads the built-in plugins through the same path', () => {
    const registry = PluginRegistry.load(['@haven/remote-local', '@haven/remote-s3'], repoRoot);
    expect(registry.hasRemote('local')).toBe(true);
    expect(registry.hasRemote('s3')).toBe(true);
  });

  it('refuses a job plugin without an executor for each of its task types', () => {
    const file = pluginFile(
      `module.exports = { plugin: { manifestVersion: 1, kind: 'job', type: 'half.done', version: '0.1.0', description: 'x', configSchema: { type: 'object', properties: {} }, taskTypes: ['half.done.vm'], plan: async () => [], executors: {} } };`,
    );
    expect(() => PluginRegistry.load([file])).toThrow(
      /needs an executor for each task type \(missing: half.done.vm\)/,
    );
  });

  it('stops the boot naming a plugin that cannot be found', () => {
    expect(() => PluginRegistry.load(['./no/such/plugin'], repoRoot)).toThrow(PluginLoadError);
    expect(() => PluginRegistry.load(['./no/such/plugin'], repoRoot)).toThrow(
      /Plugin "\.\/no\/such\/plugin" failed to load: Cannot find module/,
    );
  });

  it('stops the boot naming a plugin whose manifest is invalid, with each problem', () => {
    const file = pluginFile(
      `module.exports = { plugin: { manifestVersion: 2, kind: 'widget', type: 'Bad Type', version: 'x' } };`,
    );
    expect(() => PluginRegistry.load([file])).toThrow(
      /invalid manifest: manifestVersion must be 1 .*kind must be "remote" or "job".*type must be a lower-case name.*version must be semver.*description must be a string.*configSchema must be a JSON Schema/,
    );
  });

  it('stops the boot naming a plugin that throws while loading', () => {
    const file = pluginFile(`throw new Error('database driver missing');`);
    expect(() => PluginRegistry.load([file])).toThrow(
      `Plugin "${file}" failed to load: database driver missing`,
    );
  });

  it('refuses two plugins providing the same type', () => {
    expect(() =>
      PluginRegistry.load(
        ['./examples/plugins/example-job', './examples/plugins/example-job/index.js'],
        repoRoot,
      ),
    ).toThrow(/job type "example.echo" is already provided by ".\/examples\/plugins\/example-job"/);
  });

  it('names the installed types when an unknown one is asked for', () => {
    const registry = PluginRegistry.load(['./examples/plugins/example-job'], repoRoot);
    expect(() => registry.remote('s3')).toThrow(UnknownPluginTypeError);
    expect(() => registry.job('backup.full')).toThrow(
      'Unknown job type "backup.full"; installed: example.echo',
    );
  });
});
