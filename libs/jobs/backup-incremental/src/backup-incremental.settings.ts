import type { JsonSchemaObject } from '@haven/plugin-sdk';

export type BackupCompression = 'none' | 'zstd' | 'gzip';

/** How a base restore point is checked before a delta is built on it. */
export type BaseVerification = 'existence' | 'full';

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
  /** VMs of the job backed up at once (read by the scheduler). */
  vmConcurrency: number;
  /** Disks of one VM backed up at once. */
  diskConcurrency: number;
  /** Read only the blocks Changed Block Tracking reports on a delta run. */
  useCbt: boolean;
  /** Force a full backup when the last full is older than this many days; 0 = never. */
  fullIntervalDays: number;
  /** `existence`: every chunk the base references exists; `full`: also re-read and re-hash them. */
  verifyBase: BaseVerification;
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
    vmConcurrency: { type: 'integer', minimum: 1, maximum: 64, default: 2 },
    diskConcurrency: { type: 'integer', minimum: 1, maximum: 16, default: 2 },
    useCbt: { type: 'boolean', default: false },
    fullIntervalDays: { type: 'integer', minimum: 0, maximum: 3650, default: 0 },
    verifyBase: {
      enum: ['existence', 'full'],
      default: 'existence',
      description:
        "existence: the base restore point's chunks exist; full: they are also re-read and re-hashed",
    },
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
  const useCbt = raw['useCbt'];
  return {
    compression: compression === 'none' || compression === 'gzip' ? compression : 'zstd',
    ...(typeof level === 'number' ? { compressionLevel: level } : {}),
    concurrency: integer('concurrency', 4),
    retries: integer('retries', 0),
    snapshotNameTemplate: typeof template === 'string' && template !== '' ? template : '[Haven] {vm} {date}',
    fullInterval: integer('fullInterval', 0),
    vmConcurrency: integer('vmConcurrency', 2),
    diskConcurrency: integer('diskConcurrency', 2),
    useCbt: typeof useCbt === 'boolean' ? useCbt : false,
    fullIntervalDays: integer('fullIntervalDays', 0),
    verifyBase: raw['verifyBase'] === 'full' ? 'full' : 'existence',
  };
}

export function snapshotName(template: string, values: { vm: string; job: string; date: Date }): string {
  return template
    .replaceAll('{vm}', values.vm)
    .replaceAll('{job}', values.job)
    .replaceAll('{date}', values.date.toISOString());
}
