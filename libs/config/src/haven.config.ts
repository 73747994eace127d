import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';

/** Every setting of a Haven process, read once from the environment and validated. */
export interface HavenConfig {
  /** HTTP port of the gateway (all-in-one) or of a service's health/metrics endpoint. */
  port: number;
  host: string;
  /** Folder for embedded state (PGlite catalog, admin key). */
  dataDir: string;
  /** Postgres URL; absent = embedded PGlite in `${dataDir}/catalog`. */
  databaseUrl?: string;
  /** NATS URL; absent = in-process bus. */
  natsUrl?: string;
  /** Namespace of NATS subjects and streams, so several installations can share a NATS server. */
  natsPrefix: string;
  /** 32-byte key that encrypts secrets at rest; from HAVEN_MASTER_KEY or `${dataDir}/master-key`. */
  masterKey?: Buffer;
  /** Plugin modules (package names or paths) to load at boot. */
  plugins: string[];
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Job tasks one transfer process runs at the same time. */
  workerConcurrency: number;
  /**
   * Disk streams (a disk's export or restore, a VM archive) one transfer process moves at the same
   * time across all its tasks: what bounds its memory (~65 MiB each at peak with zstd + AES). Default: one per CPU core,
   * at least 2 and at most 8.
   */
  workerDiskStreams: number;
  /** A task without a sign of life from its worker for this long goes to another worker. */
  taskAckWaitMs: number;
  /**
   * Pause between two `event.from` calls of each pool connection's event loop, which is how a task's
   * end is learnt; absent = XapiPool's DEFAULT_EVENT_DEBOUNCE_MS (10 ms).
   */
  xapiEventDebounceMs?: number;
  /** Name of this process in logs, bus connections and worker ids. */
  instanceName: string;
}

/** The process refuses to start and names each bad variable. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: { variable: string; message: string }[]) {
    super(`Invalid configuration: ${problems.map((p) => `${p.variable} ${p.message}`).join('; ')}`);
  }
}

export const DEFAULT_PLUGINS = [
  '@haven/remote-local',
  '@haven/remote-nfs',
  '@haven/remote-smb',
  '@haven/remote-s3',
  '@haven/remote-azure',
  '@haven/job-backup-incremental',
  '@haven/job-backup-full',
];

/** One disk stream per CPU core, at least 2 and at most 8 (each holds up to ~65 MiB). */
export function defaultDiskStreams(cores = availableParallelism()): number {
  return Math.min(8, Math.max(2, cores));
}

const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  defaults: { port?: number; role?: string } = {},
): HavenConfig {
  const problems: { variable: string; message: string }[] = [];
  const text = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  /** An integer setting within [min, max]; a bad value is a problem naming the variable. */
  const integer = (name: string, min: number, max: number, unit = ''): number | undefined => {
    const raw = text(name);
    if (raw === undefined) return undefined;
    const value = Number(raw);
    if (Number.isInteger(value) && value >= min && value <= max) return value;
    problems.push({
      variable: name,
      message: `must be an integer from ${min} to ${max}${unit} (got "${raw}")`,
    });
    return undefined;
  };

  let port = defaults.port ?? 3000;
  const portText = text('HAVEN_PORT');
  if (portText !== undefined) {
    const parsed = Number(portText);
    if (!Number.isInteger(parsed) || parsed < 0 || parsed > 65535)
      problems.push({ variable: 'HAVEN_PORT', message: `must be a port number 0-65535 (got "${portText}")` });
    else port = parsed;
  }

  const databaseUrl = text('DATABASE_URL');
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl))
    problems.push({ variable: 'DATABASE_URL', message: 'must be a postgres:// URL' });

  const natsUrl = text('NATS_URL');
  if (natsUrl !== undefined && !/^(nats|tls|ws|wss):\/\//.test(natsUrl))
    problems.push({ variable: 'NATS_URL', message: 'must be a nats:// URL' });

  let masterKey: Buffer | undefined;
  const keyText = text('HAVEN_MASTER_KEY');
  if (keyText !== undefined) {
    masterKey = /^[0-9a-fA-F]{64}$/.test(keyText)
      ? Buffer.from(keyText, 'hex')
      : Buffer.from(keyText, 'base64');
    if (masterKey.length !== 32) {
      problems.push({
        variable: 'HAVEN_MASTER_KEY',
        message: 'must be 32 bytes, as 64 hex digits or base64',
      });
      masterKey = undefined;
    }
  }

  const logLevel = (text('LOG_LEVEL') ?? 'info') as HavenConfig['logLevel'];
  if (!LOG_LEVELS.includes(logLevel))
    problems.push({
      variable: 'LOG_LEVEL',
      message: `must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`,
    });

  const workerConcurrency = integer('HAVEN_WORKER_CONCURRENCY', 1, 64) ?? 2;
  const workerDiskStreams = integer('HAVEN_WORKER_DISK_STREAMS', 1, 256) ?? defaultDiskStreams();
  const taskAckWaitMs = integer('HAVEN_TASK_ACK_WAIT_MS', 1_000, 3_600_000, ' milliseconds') ?? 60_000;
  const xapiEventDebounceMs = integer('HAVEN_XAPI_EVENT_DEBOUNCE_MS', 1, 60_000, ' milliseconds');

  const natsPrefix = text('HAVEN_NATS_PREFIX') ?? 'haven';
  if (!/^[A-Za-z0-9_-]+$/.test(natsPrefix))
    problems.push({ variable: 'HAVEN_NATS_PREFIX', message: 'may hold only letters, digits, _ and -' });

  if (problems.length > 0) throw new ConfigError(problems);
  const pluginsText = text('HAVEN_PLUGINS');
  return {
    port,
    host: text('HAVEN_HOST') ?? '0.0.0.0',
    dataDir: resolve(text('HAVEN_DATA') ?? './data'),
    databaseUrl,
    natsUrl,
    natsPrefix,
    masterKey,
    plugins:
      pluginsText === undefined
        ? [...DEFAULT_PLUGINS]
        : pluginsText
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
    logLevel,
    workerConcurrency,
    workerDiskStreams,
    taskAckWaitMs,
    ...(xapiEventDebounceMs === undefined ? {} : { xapiEventDebounceMs }),
    instanceName: text('HAVEN_INSTANCE') ?? `${defaults.role ?? 'haven'}-${randomBytes(3).toString('hex')}`,
  };
}
