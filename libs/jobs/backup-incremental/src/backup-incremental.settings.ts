import type { FieldError, JsonSchemaObject } from '@haven/plugin-sdk';

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
  /** `{vm}`, `{job}` and `{date}` are replaced (SNAPSHOT_NAME_PLACEHOLDERS). */
  snapshotNameTemplate: string;
  /** A VM's backup still going after this many seconds is stopped and fails; absent = no limit. */
  vmTimeoutSeconds?: number;
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

/** Shared by every VM backup job type: XO's per-job "timeout", per VM. */
export const VM_TIMEOUT_SECONDS_SCHEMA = {
  type: 'integer',
  minimum: 1,
  maximum: 7 * 24 * 3600,
  description:
    'A VM whose backup is still going after this many seconds is stopped: its snapshot is removed, ' +
    'nothing is committed and the task fails (not retried); absent = no limit',
} as const;

/** Shared by every VM backup job type. */
export const RETRIES_SCHEMA = {
  type: 'integer',
  minimum: 0,
  maximum: 10,
  default: 0,
  description:
    'Extra attempts after a transient failure: of a VM transfer, and of planning a run when a pool does not answer',
} as const;

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
    retries: RETRIES_SCHEMA,
    snapshotNameTemplate: {
      type: 'string',
      minLength: 1,
      maxLength: 200,
      default: '[Haven] {vm} {date}',
      description: 'Name of the snapshots the job takes; {vm}, {job} and {date} are replaced',
    },
    vmTimeoutSeconds: VM_TIMEOUT_SECONDS_SCHEMA,
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
  const timeout = vmTimeoutSeconds(raw);
  return {
    compression: compression === 'none' || compression === 'gzip' ? compression : 'zstd',
    ...(typeof level === 'number' ? { compressionLevel: level } : {}),
    concurrency: integer('concurrency', 4),
    retries: integer('retries', 0),
    snapshotNameTemplate: typeof template === 'string' && template !== '' ? template : '[Haven] {vm} {date}',
    ...(timeout !== undefined ? { vmTimeoutSeconds: timeout } : {}),
    fullInterval: integer('fullInterval', 0),
    vmConcurrency: integer('vmConcurrency', 2),
    diskConcurrency: integer('diskConcurrency', 2),
    useCbt: typeof useCbt === 'boolean' ? useCbt : false,
    fullIntervalDays: integer('fullIntervalDays', 0),
    verifyBase: raw['verifyBase'] === 'full' ? 'full' : 'existence',
  };
}

/** `vmTimeoutSeconds` when set to a whole number of seconds ≥ 1; undefined = no limit. */
export function vmTimeoutSeconds(raw: Record<string, unknown>): number | undefined {
  const value = raw['vmTimeoutSeconds'];
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 ? value : undefined;
}

/** What a snapshot name template may contain between braces. */
export const SNAPSHOT_NAME_PLACEHOLDERS = ['vm', 'job', 'date'] as const;

/**
 * The `{…}` of a template that snapshotName() would leave as they are (a typo such as `{vmname}`),
 * so a job is refused when created rather than its snapshots named with braces.
 */
export function unknownSnapshotNamePlaceholders(template: string): string[] {
  const known: readonly string[] = SNAPSHOT_NAME_PLACEHOLDERS;
  const found = [...template.matchAll(/\{([^{}]*)\}/g)].map(([, name]) => name);
  return [...new Set(found.filter((name) => !known.includes(name)))].map((name) => `{${name}}`);
}

/** The job-creation check of `settings.snapshotNameTemplate` beyond its schema (JobPlugin.checkSettings). */
export function checkSnapshotNameTemplate(settings: Record<string, unknown>): FieldError[] {
  const template = settings['snapshotNameTemplate'];
  if (typeof template !== 'string') return [];
  const unknown = unknownSnapshotNamePlaceholders(template);
  if (unknown.length === 0) return [];
  return [
    {
      field: 'settings.snapshotNameTemplate',
      message: `has unknown placeholder(s) ${unknown.join(', ')}; known: ${SNAPSHOT_NAME_PLACEHOLDERS.map((name) => `{${name}}`).join(', ')}`,
    },
  ];
}

/** The template with its placeholders replaced in one pass (a VM named "{job}" stays so named). */
export function snapshotName(template: string, values: { vm: string; job: string; date: Date }): string {
  const replacements: Record<(typeof SNAPSHOT_NAME_PLACEHOLDERS)[number], string> = {
    vm: values.vm,
    job: values.job,
    date: values.date.toISOString(),
  };
  return template.replace(
    /\{(vm|job|date)\}/g,
    (_match, name: keyof typeof replacements) => replacements[name],
  );
}
