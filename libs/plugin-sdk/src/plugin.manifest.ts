import type { RemoteStore } from '@haven/remote-sdk';
import type { FieldError } from './config-validation';

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

/** A job as the catalog holds it, handed to planners and executors. */
export interface JobDefinition {
  id: string;
  tenantId: string;
  name: string;
  type: string;
  selection: Record<string, unknown>;
  remoteIds: string[];
  settings: Record<string, unknown>;
}

/** One unit of durable work a run is split into (for a backup job: one VM). */
export interface PlannedTask {
  type: string;
  /** What it works on, for people: a VM name or UUID, a remote, … */
  subject: string;
  /** Everything the executor needs besides the job; small (it travels on the bus). */
  input: Record<string, unknown>;
  /**
   * What the task must hold alone, across runs and jobs (e.g. `vm:<uuid>`): while an open task of
   * a running run holds the key, a new run's task with the same key is not queued but fails at
   * once, naming the run that holds it.
   */
  lockKey?: string;
  /**
   * The planner already knows this task cannot run (its pool did not answer, its VM is in no
   * pool): the run records it failed with this message instead of queuing it. `transient` says
   * whether planning again later may succeed (a silent pool), which the scheduler retries per the
   * job's settings before it keeps the failure.
   */
  failure?: { message: string; transient: boolean };
}

/** A pool's XAPI credentials, unsealed in memory for the time of a task. */
export interface PoolAccess {
  id: string;
  name: string;
  url: string;
  username: string;
  password: string;
  allowUnauthorized: boolean;
  /**
   * This process's pause between two `event.from` calls of a connection's event loop
   * (HAVEN_XAPI_EVENT_DEBOUNCE_MS; absent = the client's default). `XapiPool.connect` and
   * `withPoolConnection` take the access as it is, so executors need not copy it.
   */
  eventDebounceMs?: number;
}

/** A remote opened for a task, with its repository passphrase when the repository is encrypted. */
export interface RemoteAccess {
  id: string;
  name: string;
  type: string;
  store: RemoteStore;
  repositoryPassphrase?: string;
  /**
   * Id of the repository the catalog recorded for this remote at its first use (absent before):
   * its storage must hold that repository, neither none (REPOSITORY_MISSING) nor another
   * (REPOSITORY_REPLACED).
   */
  repositoryId?: string;
  /**
   * The catalog lists restore points on this remote: it held a repository, so a remote that now
   * holds none must not get a new one silently (its storage is not where the backups went). The
   * guard for remotes whose repository id is not recorded yet.
   */
  hasCatalogRestorePoints?: boolean;
  /**
   * The remote key (manifest or archive manifest) of the newest restore point the catalog lists on
   * this remote, given with hasCatalogRestorePoints: the repository a task finds there must hold it
   * before its id is recorded, else the storage holds another repository than the backups went to.
   * The newest, because retention never expires a job's last restore point.
   */
  catalogRestorePointKey?: string;
  /**
   * Records the id of the repository a task opened or initialised on this remote, when none is
   * recorded yet (concurrent first uses: the first one wins); resolves with the id the catalog
   * holds now, which the caller compares with its own. Absent where nothing records (tools).
   */
  recordRepositoryId?(repositoryId: string): Promise<string | undefined>;
}

/** Catalog objects of the job's tenant that planners and executors may use (tenant-scoped). */
export interface JobResources {
  pool(poolId: string): Promise<PoolAccess>;
  /** The caller closes `store` when done. */
  remote(remoteId: string): Promise<RemoteAccess>;
}

/** A pool of the tenant as planners list them, to pick the pools a selection names by pattern. */
export interface PoolSummary {
  id: string;
  name: string;
}

/** What planners may use: the tenant's pools and remotes, and the list of its pools. */
export interface JobPlanResources extends JobResources {
  /** Every pool of the job's tenant, by name. */
  pools(): Promise<PoolSummary[]>;
}

export interface JobPlanContext {
  job: JobDefinition;
  runId: string;
  trigger: 'manual' | 'schedule';
  scheduleId?: string;
  signal: AbortSignal;
  resources: JobPlanResources;
}

/**
 * Planning could not reach what it needs (every pool of the selection was silent): planning again
 * later may succeed, so the scheduler retries it per the job's settings before failing the run.
 */
export class PlanUnavailableError extends Error {
  readonly code = 'PLAN_UNAVAILABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PlanUnavailableError';
  }
}

/** The schedule a run was started for: its retention applies to the restore points it makes. */
export interface ScheduleDefinition {
  id: string;
  name: string;
  timezone: string;
  retention: {
    keep?: number;
    snapshotsToKeep?: number;
    gfs?: Partial<Record<'daily' | 'weekly' | 'monthly' | 'yearly', number>>;
  };
}

/** A task being executed by a worker; executing it again after a crash must be safe (idempotent). */
export interface TaskExecution {
  taskId: string;
  runId: string;
  tenantId: string;
  type: string;
  subject: string;
  input: Record<string, unknown>;
  /** 1-based delivery attempt. */
  attempt: number;
  job: JobDefinition;
  /** Absent for runs started without a schedule (no retention is applied then). */
  schedule?: ScheduleDefinition;
}

/** One disk of a task's VM: what has moved of it so far (docs/run-progress.md). */
export interface DiskProgress {
  /** The disk's key in the restore point (backup.incremental: its VBD position, such as `0`). */
  key: string;
  /** The VDI's name label, for people. */
  name?: string;
  bytesDone: number;
  bytesTotal?: number;
  /** Set by the worker (TaskProgressRates), never by an executor. */
  bytesPerSecond?: number;
  etaSeconds?: number;
}

/**
 * What a task reports while it runs: current step, bytes done and total for the task (a backup
 * task: its VM) and, where the task moves disks, each disk's bytes. The worker adds the rate and
 * ETA (`bytesPerSecond`, `etaSeconds`, over a recent window) to the task and each disk as it
 * publishes: executors leave those out.
 */
export type TaskProgress = {
  step?: string;
  bytesDone?: number;
  bytesTotal?: number;
  bytesPerSecond?: number;
  etaSeconds?: number;
  vm?: { uuid: string; name: string };
  disks?: DiskProgress[];
} & Record<string, unknown>;

/**
 * The worker's cap on disk streams moved at once across all its tasks (HAVEN_WORKER_DISK_STREAMS):
 * each stream holds a few chunks' worth of buffers, so the cap is what bounds a worker's memory
 * whatever the number of tasks, VMs and disks it runs. A disk export, disk restore or VM archive
 * holds one slot while its data flows.
 */
export interface DiskStreamSlots {
  /** Slots in all. */
  readonly size: number;
  /**
   * Waits for a free slot, first come first served, and resolves with its release (call it once,
   * when the stream is done). Rejects with the signal's reason if it aborts while waiting.
   */
  acquire(signal: AbortSignal): Promise<() => void>;
}

export interface TaskExecutionContext {
  /** Aborted on cancellation or worker shutdown: stop, leave nothing half-visible. */
  signal: AbortSignal;
  /** The worker's disk stream slots; absent where nothing caps them (tools, some tests). */
  diskStreams?: DiskStreamSlots;
  /** Publishes progress (rate-limited by the worker) and keeps the work item from being redelivered. */
  reportProgress(progress: TaskProgress): void;
  log(level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void;
  resources: JobResources;
}

/**
 * A restore point a task committed on a remote, listed in the task's result under
 * `restorePoints`: the catalog records each (idempotently) so it can be listed and restored.
 */
export interface CommittedRestorePoint {
  remoteId: string;
  /** Key of the restore point's manifest on the remote: with the remote, it names the restore point. */
  manifestKey: string;
  vmUuid: string;
  vmName: string;
  kind: 'full' | 'incremental';
  logicalBytes: number;
  storedBytes: number;
  /** When the VM's snapshot was taken (ISO 8601); XAPI gives it to the second. */
  takenAt: string;
  /**
   * When the restore point was committed (ISO 8601, to the millisecond): it orders restore points
   * taken in the same second. Workers of older releases leave it out.
   */
  committedAt?: string;
  gfsTags?: string[];
}

/**
 * Retention's outcome on one remote, listed in a task's result: `expiredRestorePoints` were deleted
 * from the remote (the catalog forgets them), `retainedRestorePoints` carry the GFS buckets they hold.
 */
export interface RestorePointReference {
  remoteId: string;
  manifestKey: string;
}

export interface RetainedRestorePoint extends RestorePointReference {
  gfsTags: string[];
}

/**
 * A failure that another attempt cannot fix (wrong credentials, a VM another backup holds, a full
 * SR): executors mark such errors with `permanent = true`, and the worker records the failure at
 * once instead of retrying the task.
 */
export function isPermanentFailure(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { permanent?: unknown }).permanent === true;
}

/** Runs one task; resolves with its result (stored with the task) or throws a typed error. */
export type TaskExecutor = (
  task: TaskExecution,
  context: TaskExecutionContext,
) => Promise<Record<string, unknown>>;

export interface JobPlugin extends PluginManifestBase {
  kind: 'job';
  /** Task types this job type's executors handle (`backup.incremental.vm`, …). */
  taskTypes: readonly string[];
  /** Splits a run of a job into tasks (scheduler side). */
  plan(context: JobPlanContext): Promise<PlannedTask[]>;
  /** One executor per task type (worker side). */
  executors: Readonly<Record<string, TaskExecutor>>;
  /**
   * Most tasks of one run executing at once (e.g. VMs backed up in parallel), from the job's
   * settings; undefined = no cap (each worker's HAVEN_WORKER_CONCURRENCY still applies). The
   * scheduler queues that many and the next one each time one ends.
   */
  taskConcurrency?(settings: Record<string, unknown>): number | undefined;
  /**
   * Checks of the settings a JSON Schema cannot state (e.g. the placeholders of a name template),
   * run on settings the schema accepted, defaults filled; each problem names its field
   * (`settings.…`) and is answered with the schema's problems as one 400.
   */
  checkSettings?(settings: Record<string, unknown>): FieldError[];
  /**
   * Extra planning attempts after a transient failure (`PlanUnavailableError`, or planned tasks
   * whose failure is transient), from the job's settings; undefined = none. The scheduler waits
   * between attempts with a growing backoff, within the run's planning time.
   */
  planRetries?(settings: Record<string, unknown>): number | undefined;
}

export type HavenPlugin = RemotePlugin | JobPlugin;
