import { Controller, Get, Inject, type OnModuleDestroy, Param, Query, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { DataSource } from 'typeorm';
import type { Bus } from '@haven/bus';
import { RUN_LOGS, RUN_PROGRESS, type RunLogBatch, type RunProgressEvent } from '@haven/contracts';
import {
  RestorePointEntity,
  RUN_LOG_LEVELS,
  RUN_STATUSES,
  RunEntity,
  RunLogEntity,
  TASK_STATUSES,
  TaskEntity,
} from '@haven/db';
import { HAVEN_BUS, notFound } from '@haven/service-core';
import type { FieldError } from '@haven/plugin-sdk';
import { CurrentPrincipal, type Principal } from '../auth/principal';
import { keyset, MAX_PAGE, pageOf, readPageRequest } from '../http/keyset.pagination';
import { failIfAny, isUuid } from '../http/request-body';
import { validId } from './tenants.controller';
import { runTransferOf, type TaskProgressState } from './run-transfer.summary';

const TERMINAL = new Set(['success', 'partial', 'failure', 'cancelled']);

/** A listing filter from the query string; a bad value is added to `errors`. */
function filter(
  query: Record<string, unknown>,
  errors: FieldError[],
  name: string,
  check: (v: string) => boolean,
  message: string,
): string | undefined {
  const value = query[name];
  if (value === undefined) return undefined;
  if (typeof value === 'string' && check(value)) return value;
  errors.push({ field: name, message });
  return undefined;
}

function presentRun(r: RunEntity) {
  return {
    id: r.id,
    kind: r.kind,
    taskConcurrency: r.taskConcurrency,
    jobId: r.jobId,
    scheduleId: r.scheduleId,
    trigger: r.trigger,
    status: r.status,
    progress: r.progress,
    error: r.error,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
  };
}

function presentTask(t: TaskEntity) {
  return {
    id: t.id,
    runId: t.runId,
    type: t.type,
    subject: t.subject,
    status: t.status,
    progress: t.progress,
    attempts: t.attempts,
    worker: t.worker,
    result: t.result,
    error: t.error,
    createdAt: t.createdAt,
    queuedAt: t.queuedAt,
    startedAt: t.startedAt,
    finishedAt: t.finishedAt,
  };
}

@ApiTags('runs')
@ApiBearerAuth()
@Controller('api/v1/runs')
export class RunsController implements OnModuleDestroy {
  /** Open event streams, ended when the process stops so the HTTP server can close. */
  private readonly streams = new Set<() => void>();

  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_BUS) private readonly bus: Bus,
  ) {}

  onModuleDestroy(): void {
    for (const finish of this.streams) finish();
  }

  @Get()
  @ApiQuery({ name: 'limit', required: false })
  @ApiQuery({ name: 'cursor', required: false })
  @ApiQuery({ name: 'jobId', required: false })
  @ApiQuery({ name: 'status', required: false, enum: RUN_STATUSES })
  async list(@CurrentPrincipal() principal: Principal, @Query() query: Record<string, unknown>) {
    const errors: FieldError[] = [];
    const page = readPageRequest(query, errors);
    const jobId = filter(query, errors, 'jobId', isUuid, 'must be a UUID');
    const status = filter(
      query,
      errors,
      'status',
      (v) => (RUN_STATUSES as readonly string[]).includes(v),
      `must be one of ${RUN_STATUSES.join(', ')}`,
    );
    failIfAny(errors);
    const qb = this.dataSource
      .getRepository(RunEntity)
      .createQueryBuilder('r')
      .where('r.tenant_id = :tenantId', { tenantId: principal.tenantId });
    if (jobId !== undefined) qb.andWhere('r.job_id = :jobId', { jobId });
    if (status !== undefined) qb.andWhere('r.status = :status', { status });
    const rows = await keyset(qb, 'r', ['created_at'], page).getMany();
    const result = pageOf(rows, page, (r) => ({ times: [r.createdAt], id: r.id }));
    return { items: result.items.map(presentRun), nextCursor: result.nextCursor };
  }

  @Get(':id')
  @ApiOperation({
    summary: 'A run with its tasks and how far it is',
    description:
      "`progress`: task counts. `transfer`: the run's bytes summed over its tasks' latest progress " +
      '(`tasksCounted`, `bytesDone`, and when known `bytesTotal`, `bytesPerSecond`, `etaSeconds`). ' +
      "Each task's `progress`: `step`, `vm`, `bytesDone`, `bytesTotal`, `bytesPerSecond` and `etaSeconds` " +
      '(over the last 10 s), and `disks` (`key`, `name`, the same figures per disk). See docs/run-progress.md.',
  })
  async show(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    const run = await this.find(principal, id);
    const tasks = await this.dataSource.getRepository(TaskEntity).find({
      where: { tenantId: principal.tenantId, runId: run.id },
      order: { createdAt: 'ASC', id: 'ASC' },
    });
    return { ...presentRun(run), transfer: runTransferOf(tasks), tasks: tasks.map(presentTask) };
  }

  /**
   * The run's stored log, oldest first: what each task's executor and worker said (attempts,
   * modes chosen and why, sizes, speeds, warnings, errors). `level=warn` keeps warnings and errors.
   */
  @Get(':id/logs')
  @ApiQuery({ name: 'limit', required: false, description: `1 to ${MAX_PAGE}, default 200` })
  @ApiQuery({ name: 'cursor', required: false, description: 'nextCursor of the previous page' })
  @ApiQuery({ name: 'taskId', required: false })
  @ApiQuery({ name: 'level', required: false, enum: RUN_LOG_LEVELS, description: 'this level and above' })
  async logs(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Query() query: Record<string, unknown>,
  ) {
    const errors: FieldError[] = [];
    const { limit } = readPageRequest({ limit: query['limit'] }, errors, 200);
    const after = filter(
      query,
      errors,
      'cursor',
      (v) => /^[0-9]{1,19}$/.test(decodeLogCursor(v)),
      'is not a cursor returned by this API',
    );
    const taskId = filter(query, errors, 'taskId', isUuid, 'must be a UUID');
    const level = filter(
      query,
      errors,
      'level',
      (v) => (RUN_LOG_LEVELS as readonly string[]).includes(v),
      `must be one of ${RUN_LOG_LEVELS.join(', ')}`,
    );
    failIfAny(errors);
    const run = await this.find(principal, id);
    const qb = this.dataSource
      .getRepository(RunLogEntity)
      .createQueryBuilder('l')
      .where('l.run_id = :runId AND l.tenant_id = :tenantId', {
        runId: run.id,
        tenantId: principal.tenantId,
      });
    if (after !== undefined) qb.andWhere('l.id > :after', { after: decodeLogCursor(after) });
    if (taskId !== undefined) qb.andWhere('l.task_id = :taskId', { taskId });
    if (level !== undefined)
      qb.andWhere('l.level IN (:...levels)', {
        levels: RUN_LOG_LEVELS.slice(RUN_LOG_LEVELS.findIndex((candidate) => candidate === level)),
      });
    const rows = await qb
      .orderBy('l.id', 'ASC')
      .limit(limit + 1)
      .getMany();
    const items = rows.slice(0, limit);
    return {
      items: items.map((l) => ({
        id: l.id,
        taskId: l.taskId,
        at: l.at,
        level: l.level,
        message: l.message,
        fields: l.fields,
      })),
      ...(rows.length > limit
        ? { nextCursor: Buffer.from(String(items.at(-1)?.id)).toString('base64url') }
        : {}),
    };
  }

  /**
   * Server-Sent Events: the run's state now, then every progress event until it ends. The bus
   * subscription starts before the state is read, so an end between the two is never missed; a
   * slow poll of the catalog covers events lost in transit. After the run's state, each started
   * task's current state comes as a `progress` event, then the run's summed bytes, rate and ETA as
   * a `transfer` event, sent again after each task's `progress`. Log lines come as `log` events
   * (the stored log is GET /runs/:id/logs).
   */
  @Get(':id/events')
  @ApiOperation({
    summary: "Server-Sent Events of a run's progress until it ends",
    description:
      "Events: `run` (the run, as GET /runs/:id without tasks), `progress` (a task's status and progress, " +
      "with bytes, rate, ETA and disks; without `taskId` for the run's end), `transfer` (the run's " +
      "summed bytes, rate and ETA, after each task's progress) and `log` (a run log line).",
  })
  async events(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Req() request: Request,
    @Res() response: Response,
  ): Promise<void> {
    let run = await this.find(principal, id);
    let closed = false;
    // Events that arrive before the stream's first event (the run's state) wait for it, and an end
    // among them ends the stream once they are out.
    const state: { backlog: string[] | undefined; endAfterBacklog: boolean } = {
      backlog: [],
      endAfterBacklog: false,
    };
    const write = (text: string) => {
      if (!closed) response.write(text);
    };
    const send = (event: string, data: unknown) => {
      const text = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
      if (state.backlog) state.backlog.push(text);
      else write(text);
    };
    // Each task's latest state, as the catalog keeps it (an empty progress keeps the one before),
    // for the run's summed bytes, rate and ETA sent as a `transfer` event after each task's event.
    const latest = new Map<string, TaskProgressState>();
    const sendTransfer = () => send('transfer', { runId: run.id, ...runTransferOf(latest.values()) });
    const subscription = this.bus.subscribe(RUN_PROGRESS, (event: RunProgressEvent) => {
      if (event.runId !== run.id || event.tenantId !== principal.tenantId) return;
      send('progress', event);
      if (event.taskId !== undefined) {
        const progress =
          Object.keys(event.progress).length > 0 ? event.progress : latest.get(event.taskId)?.progress;
        latest.set(event.taskId, { status: event.status, progress: progress ?? {} });
        sendTransfer();
      }
      if (event.taskId === undefined && TERMINAL.has(event.status)) finish();
    });
    const logs = this.bus.subscribe(RUN_LOGS, (batch: RunLogBatch) => {
      if (batch.runId !== run.id || batch.tenantId !== principal.tenantId) return;
      for (const line of batch.lines) send('log', { runId: batch.runId, ...line });
    });
    const heartbeat = setInterval(() => {
      if (!state.backlog) write(': keep-alive\n\n');
    }, 15_000);
    const poll = setInterval(() => {
      void this.find(principal, id)
        .then((latest) => {
          if (TERMINAL.has(latest.status)) {
            send('run', presentRun(latest));
            finish();
          }
        })
        .catch(() => undefined);
    }, 5_000);
    const finish = () => {
      if (closed) return;
      if (state.backlog) {
        state.endAfterBacklog = true;
        return;
      }
      closed = true;
      this.streams.delete(stop);
      clearInterval(heartbeat);
      clearInterval(poll);
      void subscription.unsubscribe();
      void logs.unsubscribe();
      response.end();
    };
    // The client left or the process stops: end now, backlog or not.
    const stop = () => {
      state.backlog = undefined;
      finish();
    };
    this.streams.add(stop);
    request.on('close', stop);
    await Promise.all([subscription.ready(), logs.ready()]);
    response.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    run = await this.find(principal, id);
    const held = state.backlog ?? [];
    state.backlog = undefined;
    write(`event: run\ndata: ${JSON.stringify(presentRun(run))}\n\n`);
    // A follower arriving mid-run sees where each task stands now, then what changes.
    const tasks = TERMINAL.has(run.status)
      ? []
      : await this.dataSource.getRepository(TaskEntity).find({
          where: { tenantId: principal.tenantId, runId: run.id },
          order: { createdAt: 'ASC', id: 'ASC' },
        });
    for (const task of tasks) {
      if (task.status === 'pending' && Object.keys(task.progress).length === 0) continue;
      const current: RunProgressEvent = {
        tenantId: principal.tenantId,
        runId: run.id,
        taskId: task.id,
        status: task.status,
        progress: task.progress,
        attempt: task.attempts,
        ...(task.worker === null ? {} : { worker: task.worker }),
        ...(task.error === null ? {} : { message: task.error }),
        at: (task.finishedAt ?? task.startedAt ?? task.createdAt).toISOString(),
      };
      write(`event: progress\ndata: ${JSON.stringify(current)}\n\n`);
      // Events held meanwhile are newer than what was read.
      if (!latest.has(task.id)) latest.set(task.id, { status: task.status, progress: task.progress });
    }
    if (tasks.length > 0)
      write(
        `event: transfer\ndata: ${JSON.stringify({ runId: run.id, ...runTransferOf(latest.values()) })}\n\n`,
      );
    for (const text of held) write(text);
    if (state.endAfterBacklog || TERMINAL.has(run.status)) finish();
  }

  private async find(principal: Principal, id: string): Promise<RunEntity> {
    const run = await this.dataSource
      .getRepository(RunEntity)
      .findOneBy({ id: validId(id), tenantId: principal.tenantId });
    if (!run) throw notFound('Run', id);
    return run;
  }
}

function decodeLogCursor(cursor: string): string {
  return Buffer.from(cursor, 'base64url').toString('utf8');
}

@ApiTags('tasks')
@ApiBearerAuth()
@Controller('api/v1/tasks')
export class TasksController {
  constructor(private readonly dataSource: DataSource) {}

  @Get()
  @ApiQuery({ name: 'runId', required: false })
  @ApiQuery({ name: 'status', required: false, enum: TASK_STATUSES })
  async list(@CurrentPrincipal() principal: Principal, @Query() query: Record<string, unknown>) {
    const errors: FieldError[] = [];
    const page = readPageRequest(query, errors);
    const runId = filter(query, errors, 'runId', isUuid, 'must be a UUID');
    const status = filter(
      query,
      errors,
      'status',
      (v) => (TASK_STATUSES as readonly string[]).includes(v),
      `must be one of ${TASK_STATUSES.join(', ')}`,
    );
    failIfAny(errors);
    const qb = this.dataSource
      .getRepository(TaskEntity)
      .createQueryBuilder('t')
      .where('t.tenant_id = :tenantId', { tenantId: principal.tenantId });
    if (runId !== undefined) qb.andWhere('t.run_id = :runId', { runId });
    if (status !== undefined) qb.andWhere('t.status = :status', { status });
    const rows = await keyset(qb, 't', ['created_at'], page).getMany();
    const result = pageOf(rows, page, (t) => ({ times: [t.createdAt], id: t.id }));
    return { items: result.items.map(presentTask), nextCursor: result.nextCursor };
  }

  @Get(':id')
  async show(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    const task = await this.dataSource
      .getRepository(TaskEntity)
      .findOneBy({ id: validId(id), tenantId: principal.tenantId });
    if (!task) throw notFound('Task', id);
    return presentTask(task);
  }
}

function presentRestorePoint(p: RestorePointEntity) {
  return {
    id: p.id,
    remoteId: p.remoteId,
    jobId: p.jobId,
    runId: p.runId,
    vmUuid: p.vmUuid,
    vmName: p.vmName,
    kind: p.kind,
    logicalBytes: p.logicalBytes,
    storedBytes: p.storedBytes,
    gfsTags: p.gfsTags,
    takenAt: p.takenAt,
    committedAt: p.committedAt,
    damagedAt: p.damagedAt,
    damage: p.damage,
  };
}

@ApiTags('restore-points')
@ApiBearerAuth()
@Controller('api/v1/restore-points')
export class RestorePointsController {
  constructor(private readonly dataSource: DataSource) {}

  @Get()
  @ApiQuery({ name: 'vmUuid', required: false })
  @ApiQuery({ name: 'remoteId', required: false })
  @ApiQuery({ name: 'jobId', required: false })
  async list(@CurrentPrincipal() principal: Principal, @Query() query: Record<string, unknown>) {
    const errors: FieldError[] = [];
    const page = readPageRequest(query, errors, 50, 2);
    const remoteId = filter(query, errors, 'remoteId', isUuid, 'must be a UUID');
    const jobId = filter(query, errors, 'jobId', isUuid, 'must be a UUID');
    const vmUuid = filter(
      query,
      errors,
      'vmUuid',
      (v) => v.length > 0 && v.length < 100,
      'must be a VM UUID',
    );
    failIfAny(errors);
    const qb = this.dataSource
      .getRepository(RestorePointEntity)
      .createQueryBuilder('p')
      .where('p.tenant_id = :tenantId', { tenantId: principal.tenantId });
    if (remoteId !== undefined) qb.andWhere('p.remote_id = :remoteId', { remoteId });
    if (jobId !== undefined) qb.andWhere('p.job_id = :jobId', { jobId });
    if (vmUuid !== undefined) qb.andWhere('p.vm_uuid = :vmUuid', { vmUuid });
    // Newest first: by snapshot time, which XAPI gives to the second, then by commit.
    const rows = await keyset(qb, 'p', ['taken_at', 'committed_at'], page).getMany();
    const result = pageOf(rows, page, (p) => ({ times: [p.takenAt, p.committedAt], id: p.id }));
    return { items: result.items.map(presentRestorePoint), nextCursor: result.nextCursor };
  }

  @Get(':id')
  async show(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    const point = await this.dataSource
      .getRepository(RestorePointEntity)
      .findOneBy({ id: validId(id), tenantId: principal.tenantId });
    if (!point) throw notFound('Restore point', id);
    return presentRestorePoint(point);
  }
}
