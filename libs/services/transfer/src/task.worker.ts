import { Inject, Injectable, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { Bus, BusSubscription, WorkItem } from '@haven/bus';
import { JOB_TASKS, RUN_PROGRESS, type RunProgressEvent, type TaskWorkItem } from '@haven/contracts';
import { RunEntity, TaskEntity } from '@haven/db';
import { type HavenConfig } from '@haven/config';
import { type HavenMetrics, type JsonLogger, runWithLogContext } from '@haven/observability';
import {
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
} from '@haven/service-core';
import { executeRestoreVm, RESTORE_VM_TASK } from './restore-vm.executor';

const TERMINAL = new Set(['success', 'failure', 'cancelled']);
/** Progress events per task at most this often; the last one always goes out. */
const PROGRESS_INTERVAL_MS = 500;

/**
 * Takes job tasks from the durable queue and runs them through their job type's executor. A task
 * already finished (a redelivery after a crash) is acknowledged without running again; a failure is
 * retried by the queue until the last attempt, which is recorded as the task's failure.
 */
@Injectable()
export class TaskWorker implements OnApplicationBootstrap, OnModuleDestroy {
  private subscription?: BusSubscription;

  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_BUS) private readonly bus: Bus,
    @Inject(HAVEN_PLUGINS) private readonly plugins: PluginRegistry,
    @Inject(HAVEN_CONFIG) private readonly config: HavenConfig,
    @Inject(HAVEN_LOGGER) private readonly logger: JsonLogger,
    @Inject(HAVEN_METRICS) private readonly metrics: HavenMetrics,
    private readonly resources: JobResourceProvider,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.subscription = await this.bus.consume(JOB_TASKS, (item) => this.handle(item), {
      concurrency: this.config.workerConcurrency,
    });
  }

  /** Stops taking work; tasks in flight see their signal aborted and go back to the queue. */
  async onModuleDestroy(): Promise<void> {
    await this.subscription?.unsubscribe();
  }

  private async handle(item: WorkItem<TaskWorkItem>): Promise<void> {
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
      const run = await this.dataSource.getRepository(RunEntity).findOneBy({ id: runId, tenantId });
      // Restore runs belong to no job: their one task type has a built-in executor.
      if (run?.kind === 'restore' && task.type === RESTORE_VM_TASK) {
        await this.execute(base, item, (reporter) =>
          executeRestoreVm({ taskId, input: task.input }, this.executionContext(tenantId, item, reporter)),
        );
        return;
      }
      const job = run?.jobId != null ? await loadJobDefinition(this.dataSource, tenantId, run.jobId) : null;
      const schedule = run?.scheduleId
        ? await loadScheduleDefinition(this.dataSource, tenantId, run.scheduleId)
        : undefined;
      if (!job) {
        await this.publish({
          ...base,
          status: 'failure',
          progress: {},
          message: 'The job of this run was deleted',
        });
        return;
      }
      const definition = job;
      await this.execute(base, item, async (reporter) => {
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
          this.executionContext(tenantId, item, reporter),
        );
      });
    });
  }

  private executionContext(
    tenantId: string,
    item: WorkItem<TaskWorkItem>,
    reporter: { report: (progress: TaskProgress) => void },
  ): TaskExecutionContext {
    return {
      signal: item.signal,
      reportProgress: reporter.report,
      resources: this.resources.forTenant(tenantId),
      log: (level, message, fields) => {
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
    run: (reporter: ReturnType<TaskWorker['progressReporter']>) => Promise<Record<string, unknown>>,
  ): Promise<void> {
    await this.publish({ ...base, status: 'running', progress: { step: 'starting' } });
    const reporter = this.progressReporter(base, item);
    this.metrics.tasksInFlight.inc({ queue: JOB_TASKS.name });
    try {
      const result = await run(reporter);
      await this.publish({ ...base, status: 'success', progress: reporter.stop() ?? {}, result });
      this.metrics.tasksCompleted.inc({ queue: JOB_TASKS.name, outcome: 'success' });
    } catch (error) {
      reporter.stop();
      // Shutting down: the bus hands the item back to the queue for another worker.
      if (item.signal.aborted) throw error;
      const message = error instanceof Error ? error.message : String(error);
      if (item.attempt < item.maxDeliver && !isPermanentFailure(error)) {
        await this.publish({
          ...base,
          status: 'pending',
          progress: {},
          message: `attempt ${item.attempt} of ${item.maxDeliver} failed: ${message}; retrying`,
        });
        throw error;
      }
      await this.publish({ ...base, status: 'failure', progress: {}, message });
      this.metrics.tasksCompleted.inc({ queue: JOB_TASKS.name, outcome: 'failure' });
    } finally {
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

  private progressReporter(
    base: { tenantId: string; runId: string; taskId: string; attempt: number },
    item: WorkItem<TaskWorkItem>,
  ) {
    let last = 0;
    let pending: TaskProgress | undefined;
    let timer: NodeJS.Timeout | undefined;
    const flush = () => {
      timer = undefined;
      if (!pending) return;
      const progress = pending;
      pending = undefined;
      last = Date.now();
      this.publish({ ...base, status: 'running', progress }).catch(() => undefined);
    };
    return {
      report: (progress: TaskProgress) => {
        item.working();
        pending = progress;
        if (timer) return;
        const wait = PROGRESS_INTERVAL_MS - (Date.now() - last);
        if (wait <= 0) flush();
        else timer = setTimeout(flush, wait);
      },
      stop: () => {
        if (timer) clearTimeout(timer);
        timer = undefined;
        return pending;
      },
    };
  }
}
