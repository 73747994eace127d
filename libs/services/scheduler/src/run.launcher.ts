import { randomUUID } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { DataSource, type EntityManager } from 'typeorm';
import type { Bus } from '@haven/bus';
import {
  RUN_LOGS,
  RUN_PROGRESS,
  type RunLogLine,
  START_RUN,
  type StartRunReply,
  type StartRunRequest,
} from '@haven/contracts';
import { RunEntity, TaskEntity } from '@haven/db';
import type { JsonLogger } from '@haven/observability';
import type { PlannedTask, PluginRegistry } from '@haven/plugin-sdk';
import {
  HAVEN_BUS,
  HAVEN_LOGGER,
  HAVEN_PLUGINS,
  JobResourceProvider,
  loadJobDefinition,
} from '@haven/service-core';
import { dispatchWaitingTasksNow } from '@haven/service-catalog';
import { XapiError, XapiPoolCache } from '@haven/xapi';
import { pendingTaskRow } from './pending-task.row';
import {
  isTransientPlanError,
  type PlanAttemptFailure,
  PlanAttemptsError,
  planWithRetries,
} from './plan.attempts';
import { BusResponder } from './bus.responder';

/** How long planning a run may take, retries included (a manual start's caller waits for it). */
const PLANNING_TIME_MS = 60_000;

/** A run that cannot start: the requester gets this code and message. */
export class RunStartError extends Error {
  constructor(
    readonly code:
      | 'JOB_NOT_FOUND'
      | 'JOB_DISABLED'
      | 'JOB_TYPE_MISSING'
      | 'NOTHING_SELECTED'
      | 'PLAN_FAILED'
      | 'PLAN_REFUSED',
    message: string,
  ) {
    super(message);
    this.name = 'RunStartError';
  }
}

/**
 * Turns "run this job" into a run with its tasks: the job type's planner splits it, the rows are
 * written in one transaction, then as many tasks as the job type's `taskConcurrency` allows are
 * queued, each under its own id (so a retried start never queues a task twice); the catalog queues
 * the next one each time one ends.
 */
@Injectable()
export class RunLauncher extends BusResponder<StartRunRequest, StartRunReply> {
  /** Pool connections planners reuse from run to run (a login per pool, not per run). */
  private readonly pools = new XapiPoolCache();
  /** Plannings under way, aborted when the module stops. */
  private readonly plannings = new Set<AbortController>();

  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_BUS) bus: Bus,
    @Inject(HAVEN_PLUGINS) private readonly plugins: PluginRegistry,
    @Inject(HAVEN_LOGGER) private readonly logger: JsonLogger,
    private readonly resources: JobResourceProvider,
  ) {
    super(bus, START_RUN);
  }

  override async onModuleDestroy(): Promise<void> {
    // Plannings under way (a retry's pause among them) stop now rather than hold the shutdown.
    for (const planning of this.plannings) planning.abort(new Error('the scheduler is stopping'));
    await super.onModuleDestroy();
    await this.pools.close();
  }

  async start(request: StartRunRequest): Promise<StartRunReply> {
    const job = await loadJobDefinition(this.dataSource, request.tenantId, request.jobId);
    if (!job) throw new RunStartError('JOB_NOT_FOUND', `Job ${request.jobId} does not exist`);
    if (request.trigger === 'schedule' && !(await this.isEnabled(job.id)))
      throw new RunStartError('JOB_DISABLED', `Job "${job.name}" is disabled`);
    if (!this.plugins.hasJob(job.type))
      throw new RunStartError(
        'JOB_TYPE_MISSING',
        `Job "${job.name}" has type "${job.type}", which no installed plugin provides`,
      );
    const runId = randomUUID();
    const controller = new AbortController();
    this.plannings.add(controller);
    const deadline = Date.now() + PLANNING_TIME_MS;
    const timer = setTimeout(() => controller.abort(), PLANNING_TIME_MS);
    const plugin = this.plugins.job(job.type);
    let planned: PlannedTask[];
    let attemptLines: RunLogLine[];
    try {
      const outcome = await planWithRetries(
        () =>
          this.pools.scope(() =>
            plugin.plan({
              job,
              runId,
              trigger: request.trigger,
              scheduleId: request.scheduleId,
              signal: controller.signal,
              resources: this.resources.forTenant(job.tenantId),
            }),
          ),
        { retries: this.planRetries(job.type, job.settings), deadline, signal: controller.signal },
      );
      planned = outcome.tasks;
      attemptLines = outcome.failures.map(attemptLine);
    } catch (error) {
      const attempts = error instanceof PlanAttemptsError ? error.attempts : [];
      const reason = `Planning job "${job.name}" failed: ${error instanceof Error ? error.message : String(error)}`;
      // Both triggers keep the failed run with every attempt's reason; a manual start is told too.
      await this.recordRunWithoutTasks(job, runId, request, {
        status: 'failure',
        reason,
        lines: [...attempts.filter((failure) => failure.retried).map(attemptLine), errorLine(reason)],
      });
      // A pool's failure (PLAN_FAILED) is upstream of Haven; anything else is the job's own
      // configuration no longer fitting the tenant (a pool pattern matching nothing, say).
      throw new RunStartError(
        involvesAPool(error) ? 'PLAN_FAILED' : 'PLAN_REFUSED',
        `${reason}; run ${runId} records it`,
      );
    } finally {
      clearTimeout(timer);
      this.plannings.delete(controller);
    }
    if (planned.length === 0) {
      const reason = `Job "${job.name}" selects no VM right now`;
      // Nobody waits for a scheduled run: the run list shows it ran and found nothing to back up.
      if (request.trigger === 'schedule')
        await this.recordRunWithoutTasks(job, runId, request, {
          status: 'success',
          reason,
          lines: [
            ...attemptLines,
            { at: new Date().toISOString(), level: 'warn', message: `${reason}; nothing was backed up` },
          ],
        });
      throw new RunStartError('NOTHING_SELECTED', reason);
    }

    const taskConcurrency = this.taskConcurrency(job.type, job.settings);
    const now = new Date();
    const tasks = planned.map((task) =>
      pendingTaskRow({
        tenantId: job.tenantId,
        runId,
        type: task.type,
        subject: task.subject,
        input: task.input,
        ...(task.lockKey !== undefined && task.failure === undefined ? { lockKey: task.lockKey } : {}),
      }),
    );
    // Tasks the planner knew could not run (a pool that did not answer, a VM in no pool) are
    // recorded failed at once, with its reason, and never queued.
    const refused: RunLogLine[] = [];
    planned.forEach((plannedTask, index) => {
      const task = tasks[index];
      if (plannedTask.failure === undefined) return;
      task.status = 'failure';
      task.error = plannedTask.failure.message;
      task.queuedAt = now;
      task.finishedAt = now;
      refused.push({ taskId: task.id, at: now.toISOString(), level: 'error', message: task.error });
    });
    await this.dataSource.transaction(async (tx) => {
      // A task whose lock another running run's open task holds fails here, before it is queued.
      const holders = await lockHolders(
        tx,
        tasks.flatMap((task) => (task.lockKey === null ? [] : [task.lockKey])),
      );
      for (const task of tasks) {
        if (task.status === 'failure') continue;
        const holder = task.lockKey === null ? undefined : holders.get(task.lockKey);
        if (holder === undefined) continue;
        task.status = 'failure';
        task.error =
          holder.tenantId === job.tenantId
            ? `${task.subject} is already being backed up by run ${holder.runId}${
                holder.jobName === null ? '' : ` of job "${holder.jobName}"`
              }; this run leaves it alone`
            : `${task.subject} is already being backed up by a run of another tenant; this run leaves it alone`;
        task.lockKey = null;
        task.queuedAt = now;
        task.finishedAt = now;
        refused.push({ taskId: task.id, at: now.toISOString(), level: 'error', message: task.error });
      }
      await tx.getRepository(RunEntity).insert({
        ...backupRunOf(job, runId, request),
        status: 'running',
        progress: { tasks: tasks.length, ...(request.note === undefined ? {} : { note: request.note }) },
        error: null,
        taskConcurrency: taskConcurrency ?? null,
        startedAt: now,
        finishedAt: null,
      });
      const taskRows = tx.getRepository(TaskEntity);
      await taskRows.save(taskRows.create(tasks), { reload: false });
    });
    // The run's own lines (planning attempts, its start, refused tasks) go out before any task is
    // queued, so they come before the lines of the tasks in the run's log.
    const startLine: RunLogLine = {
      at: now.toISOString(),
      level: 'info',
      message: `run of job "${job.name}" started (${request.trigger}): ${tasks.length} task(s), ${
        taskConcurrency === undefined ? 'all at once' : `at most ${taskConcurrency} at once`
      }`,
      ...(request.note === undefined ? {} : { fields: { note: request.note } }),
    };
    await this.bus.publish(RUN_LOGS, {
      tenantId: job.tenantId,
      runId,
      lines: [...attemptLines, startLine, ...refused],
    });
    // Rows first, then the queue: a worker taking a task must find it. A crash in between leaves
    // the tasks waiting, and the catalog's sweep queues them.
    await dispatchWaitingTasksNow(this.dataSource, this.bus, job.tenantId, runId);
    await this.bus.publish(RUN_PROGRESS, {
      tenantId: job.tenantId,
      runId,
      status: 'running',
      progress: { tasks: tasks.length },
      at: now.toISOString(),
    });
    if (refused.length === tasks.length) await this.endRefusedRun(job.tenantId, runId, refused);
    this.logger.log(
      {
        msg: 'run started',
        runId,
        jobId: job.id,
        trigger: request.trigger,
        tasks: tasks.length,
        taskConcurrency: taskConcurrency ?? 'unlimited',
      },
      'RunLauncher',
    );
    return { runId, tasks: tasks.length };
  }

  /**
   * A run that has no task to queue is still kept, so the run list and its events show every run:
   * one whose planning failed (its pool unreachable, say) as failed with the reason, one scheduled
   * while its selection matched no VM as a success with a warning.
   */
  private async recordRunWithoutTasks(
    job: { id: string; tenantId: string; name: string },
    runId: string,
    request: StartRunRequest,
    outcome: { status: 'failure' | 'success'; reason: string; lines: readonly RunLogLine[] },
  ): Promise<void> {
    const now = new Date();
    const progress = {
      tasks: 0,
      succeeded: 0,
      failed: 0,
      ...(outcome.status === 'success' ? { warning: outcome.reason } : {}),
      ...(request.note === undefined ? {} : { note: request.note }),
    };
    await this.dataSource.getRepository(RunEntity).insert({
      ...backupRunOf(job, runId, request),
      status: outcome.status,
      progress,
      error: outcome.status === 'failure' ? outcome.reason : null,
      taskConcurrency: null,
      startedAt: now,
      finishedAt: now,
    });
    await this.bus.publish(RUN_LOGS, { tenantId: job.tenantId, runId, lines: [...outcome.lines] });
    await this.bus.publish(RUN_PROGRESS, {
      tenantId: job.tenantId,
      runId,
      status: outcome.status,
      progress,
      message: outcome.reason,
      at: now.toISOString(),
    });
  }

  /** A run none of whose tasks could start (each VM being backed up by another run, or failed at planning) ends here. */
  private async endRefusedRun(
    tenantId: string,
    runId: string,
    refused: readonly RunLogLine[],
  ): Promise<void> {
    const error =
      refused.length === 1
        ? (refused[0]?.message ?? 'its task was refused')
        : `${refused.length} of ${refused.length} tasks failed before they started: ${refused
            .slice(0, 3)
            .map((line) => line.message)
            .join('; ')}${refused.length > 3 ? '; …' : ''}`;
    const rows: { progress: Record<string, unknown> }[] = await this.dataSource.query(
      `WITH ended AS (UPDATE runs SET status = 'failure', finished_at = now(), error = $3,
         progress = progress || jsonb_build_object('succeeded', 0, 'failed', $4::integer)
       WHERE id = $1 AND tenant_id = $2 AND status = 'running' RETURNING progress)
       SELECT progress FROM ended`,
      [runId, tenantId, error, refused.length],
    );
    const ended = rows.at(0);
    if (ended === undefined) return;
    await this.bus.publish(RUN_PROGRESS, {
      tenantId,
      runId,
      status: 'failure',
      progress: ended.progress,
      message: error,
      at: new Date().toISOString(),
    });
  }

  /** The job type's extra planning attempts after a transient failure; a bad answer means none. */
  private planRetries(type: string, settings: Record<string, unknown>): number {
    const retries = this.plugins.job(type).planRetries?.(settings);
    return retries !== undefined && Number.isInteger(retries) && retries >= 0 ? retries : 0;
  }

  /** The job type's cap on this run's tasks in flight; a bad answer from a plugin means no cap. */
  private taskConcurrency(type: string, settings: Record<string, unknown>): number | undefined {
    const cap = this.plugins.job(type).taskConcurrency?.(settings);
    return cap !== undefined && Number.isInteger(cap) && cap >= 1 ? cap : undefined;
  }

  private async isEnabled(jobId: string): Promise<boolean> {
    const rows: { enabled: boolean }[] = await this.dataSource.query(
      'SELECT enabled FROM jobs WHERE id = $1',
      [jobId],
    );
    return rows.at(0)?.enabled === true;
  }
}

/** Whether a pool's answer (or its silence) is behind a planning failure, anywhere in its causes. */
function involvesAPool(error: unknown): boolean {
  for (let current = error, depth = 0; current !== undefined && depth < 8; depth++) {
    if (current instanceof PlanAttemptsError) current = current.last;
    if (current instanceof XapiError || isTransientPlanError(current)) return true;
    current = current instanceof Error ? current.cause : undefined;
  }
  return false;
}

/** A failed planning attempt as a run log line. */
function attemptLine(failure: PlanAttemptFailure): RunLogLine {
  return {
    at: new Date().toISOString(),
    level: failure.retried ? 'warn' : 'error',
    message: `planning attempt ${failure.attempt} failed${failure.retried ? ', retrying' : ''}: ${failure.message}`,
  };
}

function errorLine(message: string): RunLogLine {
  return { at: new Date().toISOString(), level: 'error', message };
}

/** What a backup run's catalog row says of where it comes from: its job and what started it. */
function backupRunOf(job: { id: string; tenantId: string }, runId: string, request: StartRunRequest) {
  return {
    id: runId,
    tenantId: job.tenantId,
    jobId: job.id,
    kind: 'backup' as const,
    scheduleId: request.scheduleId ?? null,
    trigger: request.trigger,
  };
}

interface LockHolder {
  runId: string;
  tenantId: string;
  jobName: string | null;
}

/**
 * The running runs whose open tasks hold these keys. Takes a transaction-scoped advisory lock per
 * key first (in one statement, in sorted order so that two launches never wait on each other in a
 * cycle), so two launches of runs over the same VM cannot both find it free.
 */
async function lockHolders(tx: EntityManager, keys: readonly string[]): Promise<Map<string, LockHolder>> {
  const unique = [...new Set(keys)].sort();
  const holders = new Map<string, LockHolder>();
  if (unique.length === 0) return holders;
  // One statement for every key; taken in the array's (sorted) order, which WITH ORDINALITY keeps.
  await tx.query(
    `SELECT pg_advisory_xact_lock(hashtextextended(lock.key, 0))
     FROM unnest($1::text[]) WITH ORDINALITY AS lock(key, position)
     ORDER BY lock.position`,
    [unique],
  );
  const rows: { lock_key: string; run_id: string; tenant_id: string; job_name: string | null }[] =
    await tx.query(
      `SELECT DISTINCT ON (t.lock_key) t.lock_key, t.run_id, t.tenant_id, j.name AS job_name
       FROM tasks t JOIN runs r ON r.id = t.run_id LEFT JOIN jobs j ON j.id = r.job_id
       WHERE t.lock_key = ANY($1::text[]) AND t.status IN ('pending', 'running') AND r.status = 'running'
       ORDER BY t.lock_key, r.started_at`,
      [unique],
    );
  for (const row of rows)
    holders.set(row.lock_key, { runId: row.run_id, tenantId: row.tenant_id, jobName: row.job_name });
  return holders;
}
