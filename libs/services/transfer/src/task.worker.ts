import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { Bus, BusSubscription, WorkItem } from '@haven/bus';
import {
  JOB_TASKS,
  jobTasksQueue,
  REPOSITORY_GC_TASK,
  REPOSITORY_VERIFY_TASK,
  RESTORE_POINT_DELETE_TASK,
  RUN_PROGRESS,
  type RunProgressEvent,
  type TaskWorkItem,
} from '@haven/contracts';
import { RunEntity, TaskEntity } from '@haven/db';
import { type HavenConfig } from '@haven/config';
import { type HavenMetrics, type JsonLogger, runWithLogContext } from '@haven/observability';
import {
  DiskStreamSemaphore,
  isPermanentFailure,
  type PluginRegistry,
  type TaskExecutionContext,
  type TaskProgress,
} from '@haven/plugin-sdk';
import {
  HAVEN_BUS,
  HAVEN_CONFIG,
  HAVEN_LOGGER,
  HAVEN_METRICS,
  HAVEN_PLUGINS,
  JobResourceProvider,
  loadJobDefinition,
  loadScheduleDefinition,
  tuneGarbageCollectorForDataPath,
} from '@haven/service-core';
import { XapiPoolCache } from '@haven/xapi';
import { executeRestoreVm, RESTORE_VM_TASK } from './restore-vm.executor';
import { executeRepositoryGc, executeRepositoryVerify } from './repository-maintenance.executor';
import { executeRestorePointDelete } from './restore-point-delete.executor';
import { RunLogWriter } from './run-log.writer';
import { createTaskProgressReporter, type TaskProgressReporter } from './task-progress.reporter';

/** Built-in executors of runs that belong to no job, by run kind and task type. */
type BuiltInExecutor = (
  task: { taskId: string; input: Record<string, unknown> },
  context: TaskExecutionContext,
) => Promise<Record<string, unknown>>;
const BUILT_IN: Record<string, { type: string; execute: BuiltInExecutor } | undefined> = {
  restore: { type: RESTORE_VM_TASK, execute: (task, context) => executeRestoreVm(task, context) },
  gc: { type: REPOSITORY_GC_TASK, execute: executeRepositoryGc },
  verify: { type: REPOSITORY_VERIFY_TASK, execute: executeRepositoryVerify },
  'delete-restore-point': { type: RESTORE_POINT_DELETE_TASK, execute: executeRestorePointDelete },
};

const TERMINAL = new Set(['success', 'failure', 'cancelled']);

/**
 * Takes job tasks from the durable queue and runs them through their job type's executor. A task
 * already finished (a redelivery after a crash) is acknowledged without running again; a failure is
 * retried by the queue until the last attempt, which is recorded as the task's failure. While a
 * task runs, the worker tells the queue it is alive several times per ack wait, so only a dead or
 * disconnected worker's task goes to another worker (after HAVEN_TASK_ACK_WAIT_MS). What the
 * executor logs, and the worker's own lines about the attempt, are stored as the run's log.
 */
@Injectable()
export class TaskWorker implements OnApplicationBootstrap, OnModuleDestroy {
  private subscription?: BusSubscription;
  /** Pool connections reused from task to task (a login per pool, not per task). */
  private readonly pools = new XapiPoolCache();
  /** Disk streams this worker moves at once across all its tasks (HAVEN_WORKER_DISK_STREAMS). */
  private readonly diskStreams: DiskStreamSemaphore;

  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_BUS) private readonly bus: Bus,
    @Inject(HAVEN_PLUGINS) private readonly plugins: PluginRegistry,
    @Inject(HAVEN_CONFIG) private readonly config: HavenConfig,
    @Inject(HAVEN_LOGGER) private readonly logger: JsonLogger,
    @Inject(HAVEN_METRICS) private readonly metrics: HavenMetrics,
    private readonly resources: JobResourceProvider,
  ) {
    this.diskStreams = new DiskStreamSemaphore(config.workerDiskStreams);
  }

  async onApplicationBootstrap(): Promise<void> {
    this.subscription = await this.bus.consume(
      jobTasksQueue(this.config.taskAckWaitMs),
      (item) => this.handle(item),
      {
        concurrency: this.config.workerConcurrency,
      },
    );
  }

  /** Stops taking work; tasks in flight see their signal aborted and go back to the queue. */
  async onModuleDestroy(): Promise<void> {
    await this.subscription?.unsubscribe();
    await this.pools.close();
  }

  private async handle(item: WorkItem<TaskWorkItem>): Promise<void> {
    // Executors of this worker share its logged-in pool connections (withPoolConnection).
    await this.pools.scope(() => this.handleInScope(item));
  }

  private async handleInScope(item: WorkItem<TaskWorkItem>): Promise<void> {
    const { tenantId, runId, taskId } = item.payload;
    await runWithLogContext({ runId, taskId, tenantId }, async () => {
      const task = await this.dataSource.getRepository(TaskEntity).findOneBy({ id: taskId, tenantId, runId });
      if (!task) {
        this.logger.warn(
          { msg: 'queued task no longer exists (its run was deleted); dropping it', taskId },
          'TaskWorker',
        );
        return;
      }
      // A redelivery of work that did finish (the worker died before its ack): nothing to redo.
      if (TERMINAL.has(task.status)) return;
      const base = { tenantId, runId, taskId, attempt: item.attempt };
      const log = new RunLogWriter(this.bus, { tenantId, runId, taskId });
      // Taken over from a worker that went silent mid-task: say so, it explains the second attempt.
      if (task.status === 'running' && task.worker !== null && task.worker !== this.config.instanceName)
        log.line(
          'warn',
          `worker ${task.worker} stopped answering during attempt ${task.attempts}; worker ${this.config.instanceName} takes the task over`,
          { previousWorker: task.worker, previousAttempt: task.attempts },
        );
      const run = await this.dataSource.getRepository(RunEntity).findOneBy({ id: runId, tenantId });
      // Runs of no job (restore, gc, verify, delete-restore-point): their one task type has a built-in executor.
      const builtIn = run ? BUILT_IN[run.kind] : undefined;
      if (builtIn && task.type === builtIn.type) {
        await this.execute(base, item, log, (reporter) =>
          builtIn.execute(
            { taskId, input: task.input },
            this.executionContext(tenantId, item, reporter, log),
          ),
        );
        return;
      }
      const job = run?.jobId != null ? await loadJobDefinition(this.dataSource, tenantId, run.jobId) : null;
      const schedule = run?.scheduleId
        ? await loadScheduleDefinition(this.dataSource, tenantId, run.scheduleId)
        : undefined;
      if (!job) {
        log.line('error', 'The job of this run was deleted');
        await log.close();
        await this.publish({
          ...base,
          status: 'failure',
          progress: {},
          message: 'The job of this run was deleted',
        });
        return;
      }
      const definition = job;
      await this.execute(base, item, log, async (reporter) => {
        const executor = this.plugins.hasJob(definition.type)
          ? this.plugins.job(definition.type).executors[task.type]
          : undefined;
        if (!executor)
          throw new Error(
            `Worker ${this.config.instanceName} has no executor for task type "${task.type}" (job type "${definition.type}"): install that plugin on every transfer worker`,
          );
        return executor(
          {
            taskId,
            runId,
            tenantId,
            type: task.type,
            subject: task.subject,
            input: task.input,
            attempt: item.attempt,
            job: definition,
            ...(schedule === undefined ? {} : { schedule }),
          },
          this.executionContext(tenantId, item, reporter, log),
        );
      });
    });
  }

  private executionContext(
    tenantId: string,
    item: WorkItem<TaskWorkItem>,
    reporter: { report: (progress: TaskProgress) => void },
    runLog: RunLogWriter,
  ): TaskExecutionContext {
    return {
      signal: item.signal,
      diskStreams: this.diskStreams,
      reportProgress: reporter.report,
      resources: this.resources.forTenant(tenantId),
      log: (level, message, fields) => {
        runLog.line(level, message, fields);
        const entry = { msg: message, ...fields };
        if (level === 'info') this.logger.log(entry, 'TaskExecutor');
        else this.logger[level](entry, 'TaskExecutor');
      },
    };
  }

  /**
   * Runs one attempt of a task and records its outcome: success with its result; a failure is
   * retried by the queue until the last attempt, which is recorded as the task's failure.
   */
  private async execute(
    base: { tenantId: string; runId: string; taskId: string; attempt: number },
    item: WorkItem<TaskWorkItem>,
    log: RunLogWriter,
    run: (reporter: TaskProgressReporter) => Promise<Record<string, unknown>>,
  ): Promise<void> {
    // Disk data is about to flow through this process (after boot, whose garbage the default
    // collector has dealt with: docs/benchmarks/jobs.md, "Garbage collector").
    tuneGarbageCollectorForDataPath();
    await this.publish({ ...base, status: 'running', progress: { step: 'starting' } });
    log.line(
      'info',
      `attempt ${item.attempt} of ${item.maxDeliver} started on worker ${this.config.instanceName}`,
      {
        worker: this.config.instanceName,
        attempt: item.attempt,
      },
    );
    const started = Date.now();
    const reporter = createTaskProgressReporter(
      (progress) => void this.publish({ ...base, status: 'running', progress }).catch(() => undefined),
      () => item.working(),
    );
    // Signs of life several times per ack wait, even through long silent steps (snapshot, GC).
    const heartbeat = setInterval(
      () => item.working(),
      Math.max(250, Math.floor(this.config.taskAckWaitMs / 4)),
    );
    this.metrics.tasksInFlight.inc({ queue: JOB_TASKS.name });
    try {
      const result = await run(reporter);
      clearInterval(heartbeat);
      log.line('info', `task finished in ${((Date.now() - started) / 1000).toFixed(1)} s`, {
        durationMs: Date.now() - started,
      });
      await log.close();
      await this.publish({ ...base, status: 'success', progress: reporter.stop() ?? {}, result });
      this.metrics.tasksCompleted.inc({ queue: JOB_TASKS.name, outcome: 'success' });
    } catch (error) {
      clearInterval(heartbeat);
      reporter.stop();
      const message = error instanceof Error ? error.message : String(error);
      // Shutting down: the bus hands the item back to the queue for another worker.
      if (item.signal.aborted) {
        log.line(
          'warn',
          `attempt ${item.attempt} stopped: worker ${this.config.instanceName} is shutting down`,
        );
        await log.close();
        throw error;
      }
      if (item.attempt < item.maxDeliver && !isPermanentFailure(error)) {
        log.line('warn', `attempt ${item.attempt} of ${item.maxDeliver} failed: ${message}; retrying`, {
          error: message,
        });
        await log.close();
        await this.publish({
          ...base,
          status: 'pending',
          progress: {},
          message: `attempt ${item.attempt} of ${item.maxDeliver} failed: ${message}; retrying`,
        });
        throw error;
      }
      log.line('error', `task failed: ${message}`, { error: message, attempt: item.attempt });
      await log.close();
      await this.publish({ ...base, status: 'failure', progress: {}, message });
      this.metrics.tasksCompleted.inc({ queue: JOB_TASKS.name, outcome: 'failure' });
    } finally {
      clearInterval(heartbeat);
      this.metrics.tasksInFlight.dec({ queue: JOB_TASKS.name });
    }
  }

  private publish(event: Omit<RunProgressEvent, 'at' | 'worker'>): Promise<void> {
    return this.bus.publish(RUN_PROGRESS, {
      ...event,
      worker: this.config.instanceName,
      at: new Date().toISOString(),
    });
  }
}
