import type { RemoteStore } from '@haven/remote-sdk';

/** A JSON Schema (draft 2020-12 subset understood by Ajv) describing a plugin's settings object. */
export type JsonSchemaObject = {
  type: 'object';
  properties: Record<string, Record<string, unknown>>;
  required?: string[];
  additionalProperties?: boolean;
} & Record<string, unknown>;

export type PluginKind = 'remote' | 'job';

interface PluginManifestBase {
  /** Version of this manifest format, so old plugins can be refused with a clear reason. */
  manifestVersion: 1;
  kind: PluginKind;
  /** Unique per kind: `s3`, `backup.incremental`, … */
  type: string;
  /** The plugin's own semver version. */
  version: string;
  description: string;
  /** Validates the settings an operator gives a remote or a job of this type. */
  configSchema: JsonSchemaObject;
  /**
   * Top-level settings fields that are secrets (passwords, keys): encrypted at rest with the
   * master key, never returned by the API, never logged.
   */
  secretFields?: readonly string[];
}

export interface RemotePluginContext {
  /** Operator-facing name of the remote, used in error messages. */
  name: string;
}

export interface RemotePlugin extends PluginManifestBase {
  kind: 'remote';
  /** Opens the remote. Must not do network I/O beyond what connecting needs. */
  create(config: Record<string, unknown>, context: RemotePluginContext): RemoteStore | Promise<RemoteStore>;
}

export interface JobPlugin extends PluginManifestBase {
  kind: 'job';
  /** Task types this job type's executors handle (`backup.incremental.vm`, …). */
  taskTypes: readonly string[];
}

export type HavenPlugin = RemotePlugin | JobPlugin;
