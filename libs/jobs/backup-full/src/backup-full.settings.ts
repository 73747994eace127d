import type { JsonSchemaObject } from '@haven/plugin-sdk';
import { RETRIES_SCHEMA, VM_TIMEOUT_SECONDS_SCHEMA, vmTimeoutSeconds } from '@haven/job-backup-incremental';
import type { XvaCompression } from '@haven/xapi';

/** A `backup.full` job's settings after validation (the registry validates with Ajv and fills defaults). */
export interface BackupFullSettings {
  /** Host-side compression of the XVA export. */
  compression: XvaCompression;
  /** Extra attempts of a VM's backup inside one task attempt after a transfer failure. */
  retries: number;
  /** `{vm}`, `{job}` and `{date}` are replaced. */
  snapshotNameTemplate: string;
  /** A VM's backup still going after this many seconds is stopped and fails; absent = no limit. */
  vmTimeoutSeconds?: number;
  /** VMs of one run backed up at once (read by the scheduler). */
  vmConcurrency: number;
}

export const BACKUP_FULL_SETTINGS_SCHEMA: JsonSchemaObject = {
  type: 'object',
  properties: {
    compression: {
      enum: ['none', 'gzip', 'zstd'],
      default: 'zstd',
      description: 'Compression of the XVA export, done by the host',
    },
    retries: RETRIES_SCHEMA,
    snapshotNameTemplate: {
      type: 'string',
      minLength: 1,
      maxLength: 200,
      default: '[Haven full] {vm} {date}',
      description: 'Name of the snapshots the job takes; {vm}, {job} and {date} are replaced',
    },
    vmTimeoutSeconds: VM_TIMEOUT_SECONDS_SCHEMA,
    vmConcurrency: {
      type: 'integer',
      minimum: 1,
      maximum: 64,
      default: 2,
      description: 'VMs of the job backed up at once',
    },
  },
  additionalProperties: false,
};

/** Reads the settings, applying the defaults again (a job stored before a default existed has none). */
export function backupFullSettings(raw: Record<string, unknown>): BackupFullSettings {
  const integer = (key: string, fallback: number): number => {
    const value = raw[key];
    return typeof value === 'number' && Number.isInteger(value) ? value : fallback;
  };
  const compression = raw['compression'];
  const template = raw['snapshotNameTemplate'];
  const timeout = vmTimeoutSeconds(raw);
  return {
    compression: compression === 'none' || compression === 'gzip' ? compression : 'zstd',
    retries: integer('retries', 0),
    snapshotNameTemplate:
      typeof template === 'string' && template !== '' ? template : '[Haven full] {vm} {date}',
    ...(timeout !== undefined ? { vmTimeoutSeconds: timeout } : {}),
    vmConcurrency: integer('vmConcurrency', 2),
  };
}
