import { isAbsolute, resolve } from 'node:path';
import { assertSchemaCompiles } from './config-validation';
import type { HavenPlugin, JobPlugin, PluginKind, RemotePlugin } from './plugin.manifest';

/** A plugin that could not be loaded: boot stops with this, naming the plugin and the reason. */
export class PluginLoadError extends Error {
  override readonly name = 'PluginLoadError';
  constructor(
    readonly plugin: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`Plugin "${plugin}" failed to load: ${reason}`, options);
  }
}

export class UnknownPluginTypeError extends Error {
  override readonly name = 'UnknownPluginTypeError';
  constructor(
    readonly kind: PluginKind,
    readonly type: string,
    readonly known: readonly string[],
  ) {
    super(`Unknown ${kind} type "${type}"; installed: ${known.join(', ') || 'none'}`);
  }
}

function manifestProblems(candidate: unknown): string[] {
  if (typeof candidate !== 'object' || candidate === null) return ['the module exports no plugin manifest'];
  const m = candidate as Record<string, unknown>;
  const problems: string[] = [];
  if (m['manifestVersion'] !== 1)
    problems.push(`manifestVersion must be 1 (got ${JSON.stringify(m['manifestVersion'])})`);
  if (m['kind'] !== 'remote' && m['kind'] !== 'job')
    problems.push(`kind must be "remote" or "job" (got ${JSON.stringify(m['kind'])})`);
  if (typeof m['type'] !== 'string' || !/^[a-z][a-z0-9.-]*$/.test(m['type']))
    problems.push('type must be a lower-case name such as "s3" or "backup.full"');
  if (typeof m['version'] !== 'string' || !/^\d+\.\d+\.\d+/.test(m['version']))
    problems.push('version must be semver');
  if (typeof m['description'] !== 'string') problems.push('description must be a string');
  const schema = m['configSchema'] as Record<string, unknown> | null | undefined;
  if (schema === null || typeof schema !== 'object' || schema['type'] !== 'object')
    problems.push('configSchema must be a JSON Schema of type "object"');
  if (m['kind'] === 'remote' && typeof m['create'] !== 'function')
    problems.push('a remote plugin must export create()');
  if (m['kind'] === 'job') {
    if (!Array.isArray(m['taskTypes'])) problems.push('a job plugin must list its taskTypes');
    if (typeof m['plan'] !== 'function') problems.push('a job plugin must export plan()');
    const executors = m['executors'] as Record<string, unknown> | null | undefined;
    const missing = Array.isArray(m['taskTypes'])
      ? (m['taskTypes'] as unknown[]).filter(
          (t) => typeof t !== 'string' || typeof executors?.[t] !== 'function',
        )
      : [];
    if (missing.length > 0)
      problems.push(`a job plugin needs an executor for each task type (missing: ${missing.join(', ')})`);
  }
  if (m['secretFields'] !== undefined && !Array.isArray(m['secretFields']))
    problems.push('secretFields must be an array');
  return problems;
}

/** Errors from another realm (a test VM) fail `instanceof Error`, so read the message by shape. */
function messageOf(error: unknown): string {
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(error);
}

/** Finds the manifest in a loaded module: `default`, `plugin`, or the module itself. */
function pickManifest(loaded: unknown): unknown {
  if (typeof loaded !== 'object' || loaded === null) return loaded;
  const mod = loaded as Record<string, unknown>;
  return mod['plugin'] ?? mod['default'] ?? mod;
}

/** Loads a module by package name or path. Uses require() so CommonJS and ESM plugins both load (Node ≥ 20.19). */
function loadModule(specifier: string, baseDir: string): unknown {
  const isPath = specifier.startsWith('.') || isAbsolute(specifier);
  const target = isPath ? resolve(baseDir, specifier) : specifier;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(target) as unknown;
}

/** The remote and job types this process knows, from HAVEN_PLUGINS. */
export class PluginRegistry {
  private readonly remotes = new Map<string, RemotePlugin>();
  private readonly jobs = new Map<string, JobPlugin>();
  private readonly sources = new Map<string, string>();

  /** Loads every plugin in order; the first failure throws PluginLoadError and nothing is half-registered. */
  static load(specifiers: readonly string[], baseDir = process.cwd()): PluginRegistry {
    const registry = new PluginRegistry();
    for (const specifier of specifiers) {
      let loaded: unknown;
      try {
        loaded = loadModule(specifier, baseDir);
      } catch (error) {
        throw new PluginLoadError(specifier, messageOf(error), {
          cause: error,
        });
      }
      registry.register(pickManifest(loaded), specifier);
    }
    return registry;
  }

  register(candidate: unknown, source: string): void {
    const problems = manifestProblems(candidate);
    if (problems.length > 0) throw new PluginLoadError(source, `invalid manifest: ${problems.join('; ')}`);
    const plugin = candidate as HavenPlugin;
    try {
      assertSchemaCompiles(plugin.configSchema);
    } catch (error) {
      throw new PluginLoadError(source, `configSchema does not compile: ${(error as Error).message}`);
    }
    const key = `${plugin.kind}:${plugin.type}`;
    const previous = this.sources.get(key);
    if (previous !== undefined)
      throw new PluginLoadError(
        source,
        `${plugin.kind} type "${plugin.type}" is already provided by "${previous}"`,
      );
    this.sources.set(key, source);
    if (plugin.kind === 'remote') this.remotes.set(plugin.type, plugin);
    else this.jobs.set(plugin.type, plugin);
  }

  remote(type: string): RemotePlugin {
    const plugin = this.remotes.get(type);
    if (!plugin) throw new UnknownPluginTypeError('remote', type, [...this.remotes.keys()]);
    return plugin;
  }

  job(type: string): JobPlugin {
    const plugin = this.jobs.get(type);
    if (!plugin) throw new UnknownPluginTypeError('job', type, [...this.jobs.keys()]);
    return plugin;
  }

  hasRemote(type: string): boolean {
    return this.remotes.has(type);
  }

  hasJob(type: string): boolean {
    return this.jobs.has(type);
  }

  list(): { kind: PluginKind; type: string; version: string; description: string; source: string }[] {
    return [...this.remotes.values(), ...this.jobs.values()].map((p) => ({
      kind: p.kind,
      type: p.type,
      version: p.version,
      description: p.description,
      source: this.sources.get(`${p.kind}:${p.type}`) ?? '',
    }));
  }
}
