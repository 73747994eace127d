import type { JsonSchemaObject } from '@haven/plugin-sdk';

export type BackupCompression = 'none' | 'zstd' | 'gzip';

/** A job's settings after validation (the registry validates with Ajv and fills defaults). */
export interface BackupIncrementalSettings {
  compression: BackupCompression;
  compressionLevel?: number;
  /** Chunks sealed and uploaded at once per remote. */
  concurrency: number;
  /** Extra attempts of a VM's backup inside one task attempt after a transfer failure. */
  retries: number;
  /** `{vm}`, `{job}` and `{date}` are replaced. */
  snapshotNameTemplate: string;
  /** Force a full backup after this many incrementals in a row; 0 = never. */
  fullInterval: number;
}

export const BACKUP_INCREMENTAL_SETTINGS_SCHEMA: JsonSchemaObject = {
  type: 'object',
  properties: {
    compression: { enum: ['none', 'zstd', 'gzip'], default: 'zstd' },
    compressionLevel: {
      type: 'integer',
      minimum: 1,
      maximum: 19,
      description: 'zstd 1..19, gzip 1..9; used when a repository is initialised',
    },
    concurrency: { type: 'integer', minimum: 1, maximum: 32, default: 4 },
    retries: { type: 'integer', minimum: 0, maximum: 10, default: 0 },
    snapshotNameTemplate: {
      type: 'string',
      minLength: 1,
      maxLength: 200,
      default: '[Haven] {vm} {date}',
    },
    fullInterval: { type: 'integer', minimum: 0, maximum: 10000, default: 0 },
  },
  additionalProperties: false,
};

/** Reads the settings, applying the defaults again (a job stored before a default existed has none). */
export function backupSettings(raw: Record<string, unknown>): BackupIncrementalSettings {
  const integer = (key: string, fallback: number): number => {
    const value = raw[key];
    return typeof value === 'number' && Number.isInteger(value) ? value : fallback;
  };
  const compression = raw['compression'];
  const level = raw['compressionLevel'];
  const template = raw['snapshotNameTemplate'];
  return {
    compression: compression === 'none' || compression === 'gzip' ? compression : 'zstd',
    ...(typeof level === 'number' ? { compressionLevel: level } : {}),
    concurrency: integer('concurrency', 4),
    retries: integer('retries', 0),
    snapshotNameTemplate: typeof template === 'string' && template !== '' ? template : '[Haven] {vm} {date}',
    fullInterval: integer('fullInterval', 0),
  };
}

export function snapshotName(template: string, values: { vm: string; job: string; date: Date }): string {
  return template
    .replaceAll('{vm}', values.vm)
    .replaceAll('{job}', values.job)
    .replaceAll('{date}', values.date.toISOString());
}
