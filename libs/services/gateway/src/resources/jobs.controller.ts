import { randomUUID } from 'node:crypto';
import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  HttpStatus,
  Inject,
  Param,
  Patch,
  Post,
} from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { DataSource, In } from 'typeorm';
import { JobEntity, PoolEntity, RemoteEntity, ScheduleEntity } from '@haven/db';
import { BusNoRespondersError, BusRemoteError, BusTimeoutError, type Bus } from '@haven/bus';
import { START_RUN } from '@haven/contracts';
import { conflict, HAVEN_BUS, HAVEN_PLUGINS, notFound, ProblemException } from '@haven/service-core';
import {
  type FieldError,
  globMatcher,
  type JsonSchemaObject,
  type PluginRegistry,
  validateAgainstSchema,
} from '@haven/plugin-sdk';
import { CurrentPrincipal, type Principal } from '../auth/principal';
import { failIfAny, isUuid, parseBody } from '../http/request-body';
import { AuditTrail } from './audit.trail';
import { validId } from './tenants.controller';

const SELECTION = {
  type: 'object',
  properties: {
    pools: {
      type: ['array', 'string'],
      description:
        'The pools to select from: a list of pool ids, or a glob over pool names ("*" every pool of the ' +
        'tenant, "prod-?"), resolved at each run. Required in smart mode; in explicit mode it defaults ' +
        'to every pool, where each listed VM is looked up',
    },
    poolId: {
      type: 'string',
      format: 'uuid',
      description: 'One pool: the form of jobs made before `pools` (same as `pools: [poolId]`)',
    },
    mode: {
      enum: ['explicit', 'smart'],
      description: 'explicit: the listed VMs; smart: VMs matching patterns at each run',
    },
    vms: {
      type: 'array',
      items: { type: 'string', minLength: 1 },
      uniqueItems: true,
      description: 'VM UUIDs (explicit mode)',
    },
    tags: {
      type: 'array',
      items: { type: 'string', minLength: 1 },
      description: 'Smart mode: VMs with any of these tags',
    },
    excludeTags: {
      type: 'array',
      items: { type: 'string', minLength: 1 },
      description: 'Smart mode: never VMs with these tags (no-backup is always excluded)',
    },
    powerState: { enum: ['running', 'halted', 'any'] },
    namePattern: { type: 'string', minLength: 1, description: 'Smart mode: glob over VM names' },
  },
  required: ['mode'],
  additionalProperties: false,
};
/** A pool-name pattern longer than this is a mistake, not a pattern. */
const POOL_PATTERN_MAX = 200;
const JOB_FIELDS = {
  name: { type: 'string', minLength: 1, maxLength: 100 },
  type: { type: 'string', description: 'A job plugin type: backup.full, backup.incremental, …' },
  selection: SELECTION,
  remoteIds: { type: 'array', items: { type: 'string', format: 'uuid' }, minItems: 1, uniqueItems: true },
  settings: { type: 'object', description: "Validated against the job type's schema" },
  enabled: { type: 'boolean' },
};
const CREATE_JOB: JsonSchemaObject = {
  type: 'object',
  properties: JOB_FIELDS,
  required: ['name', 'type', 'selection', 'remoteIds'],
  additionalProperties: false,
};
/** Optional body of POST /jobs/:id/run: run now as this schedule would (its retention applies). */
const RUN_JOB: JsonSchemaObject = {
  type: 'object',
  properties: { scheduleId: { type: 'string', format: 'uuid' } },
  additionalProperties: false,
};
const UPDATE_JOB: JsonSchemaObject = {
  type: 'object',
  properties: {
    name: JOB_FIELDS.name,
    selection: SELECTION,
    remoteIds: JOB_FIELDS.remoteIds,
    settings: JOB_FIELDS.settings,
    enabled: JOB_FIELDS.enabled,
  },
  additionalProperties: false,
};

export interface JobSelection {
  pools?: string[] | string;
  poolId?: string;
  mode: 'explicit' | 'smart';
  vms?: string[];
  tags?: string[];
  excludeTags?: string[];
  powerState?: 'running' | 'halted' | 'any';
  namePattern?: string;
}

interface JobInput {
  name: string;
  type: string;
  selection: JobSelection;
  remoteIds: string[];
  settings?: Record<string, unknown>;
  enabled?: boolean;
}

function present(j: JobEntity) {
  return {
    id: j.id,
    name: j.name,
    type: j.type,
    selection: j.selection,
    remoteIds: j.remoteIds,
    settings: j.settings,
    enabled: j.enabled,
    createdAt: j.createdAt,
    updatedAt: j.updatedAt,
  };
}

@ApiTags('jobs')
@ApiBearerAuth()
@Controller('api/v1/jobs')
export class JobsController {
  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_PLUGINS) private readonly plugins: PluginRegistry,
    @Inject(HAVEN_BUS) private readonly bus: Bus,
    private readonly audit: AuditTrail,
  ) {}

  @Get()
  async list(@CurrentPrincipal() principal: Principal) {
    const jobs = await this.dataSource
      .getRepository(JobEntity)
      .find({ where: { tenantId: principal.tenantId }, order: { name: 'ASC' } });
    return { items: jobs.map(present) };
  }

  @Get(':id')
  async show(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    return present(await this.find(principal, id));
  }

  @Post()
  @ApiBody({ schema: CREATE_JOB })
  async create(@CurrentPrincipal() principal: Principal, @Body() body: unknown) {
    const input = parseBody<JobInput>(CREATE_JOB, body);
    const settings = input.settings ?? {};
    await this.check(principal, input.type, input.selection, input.remoteIds, settings);
    const repository = this.dataSource.getRepository(JobEntity);
    if (await repository.existsBy({ tenantId: principal.tenantId, name: input.name }))
      throw conflict(`A job named "${input.name}" already exists`);
    const id = randomUUID();
    await repository.save(
      repository.create({
        id,
        tenantId: principal.tenantId,
        name: input.name,
        type: input.type,
        selection: input.selection as unknown as Record<string, unknown>,
        remoteIds: input.remoteIds,
        settings,
        enabled: input.enabled ?? true,
      }),
    );
    await this.audit.record(
      principal.tenantId,
      'job.create',
      'job',
      id,
      { name: input.name, type: input.type },
      principal.keyId,
    );
    return present(await repository.findOneByOrFail({ id }));
  }

  @Patch(':id')
  @ApiBody({ schema: UPDATE_JOB })
  async update(@CurrentPrincipal() principal: Principal, @Param('id') id: string, @Body() body: unknown) {
    const job = await this.find(principal, id);
    const input = parseBody<Partial<JobInput>>(UPDATE_JOB, body);
    const merged = {
      selection: input.selection ?? (job.selection as unknown as JobSelection),
      remoteIds: input.remoteIds ?? job.remoteIds,
      settings: input.settings ?? job.settings,
    };
    await this.check(principal, job.type, merged.selection, merged.remoteIds, merged.settings);
    const repository = this.dataSource.getRepository(JobEntity);
    if (
      input.name !== undefined &&
      input.name !== job.name &&
      (await repository.existsBy({ tenantId: principal.tenantId, name: input.name }))
    )
      throw conflict(`A job named "${input.name}" already exists`);
    repository.merge(job, {
      ...(input.name === undefined ? {} : { name: input.name }),
      ...(input.enabled === undefined ? {} : { enabled: input.enabled }),
      selection: merged.selection as unknown as Record<string, unknown>,
      remoteIds: merged.remoteIds,
      settings: merged.settings,
    });
    await repository.save(job);
    await this.audit.record(
      principal.tenantId,
      'job.update',
      'job',
      job.id,
      { fields: Object.keys(input) },
      principal.keyId,
    );
    return present(await repository.findOneByOrFail({ id: job.id }));
  }

  /** Starts a run now; follow it with GET /runs/:id or the SSE stream /runs/:id/events. */
  @Post(':id/run')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Start a run of the job now',
    description:
      "202 with the run id once its tasks are queued. 502 when planning failed, after the job's `retries`, " +
      'because a pool did not answer: the detail names the pool and the run that records the failure. ' +
      "409 when planning failed for the job's own configuration (a pool pattern matching no pool, a pool " +
      'removed from Haven: the failed run is listed too), when the selection matches no VM right now (no run ' +
      'is listed) or no installed plugin runs its type; ' +
      '503 / 504 when no scheduler answers. A pool of several that does not answer does not stop the ' +
      'run: it becomes a failed task naming it (docs/jobs.md).',
  })
  @ApiBody({ schema: RUN_JOB, required: false })
  async run(@CurrentPrincipal() principal: Principal, @Param('id') id: string, @Body() body: unknown) {
    const job = await this.find(principal, id);
    const input = parseBody<{ scheduleId?: string }>(RUN_JOB, body ?? {});
    if (
      input.scheduleId !== undefined &&
      !(await this.dataSource
        .getRepository(ScheduleEntity)
        .existsBy({ id: input.scheduleId, jobId: job.id, tenantId: principal.tenantId }))
    )
      failIfAny([{ field: 'scheduleId', message: `is not a schedule of job "${job.name}"` }]);
    try {
      const reply = await this.bus.request(
        START_RUN,
        {
          tenantId: principal.tenantId,
          jobId: job.id,
          trigger: 'manual',
          ...(input.scheduleId === undefined ? {} : { scheduleId: input.scheduleId }),
        },
        { timeoutMs: 90_000 },
      );
      await this.audit.record(
        principal.tenantId,
        'job.run',
        'job',
        job.id,
        { runId: reply.runId },
        principal.keyId,
      );
      return { runId: reply.runId, tasks: reply.tasks, events: `/api/v1/runs/${reply.runId}/events` };
    } catch (error) {
      throw runStartProblem(error, job.name);
    }
  }

  @Delete(':id')
  @HttpCode(204)
  async remove(@CurrentPrincipal() principal: Principal, @Param('id') id: string): Promise<void> {
    const job = await this.find(principal, id);
    await this.dataSource.getRepository(JobEntity).delete({ id: job.id });
    await this.audit.record(principal.tenantId, 'job.delete', 'job', job.id, {}, principal.keyId);
  }

  /** Every problem at once: unknown type, bad settings, no VM, unknown pools or remotes, a bad pool pattern. */
  private async check(
    principal: Principal,
    type: string,
    selection: JobSelection,
    remoteIds: string[],
    settings: Record<string, unknown>,
  ): Promise<void> {
    const errors: FieldError[] = [];
    if (!this.plugins.hasJob(type)) {
      const known = this.plugins
        .list()
        .filter((p) => p.kind === 'job')
        .map((p) => p.type);
      errors.push({
        field: 'type',
        message: `is not an installed job type (installed: ${known.join(', ')})`,
      });
    } else {
      const plugin = this.plugins.job(type);
      const invalid = validateAgainstSchema(plugin.configSchema, settings, 'settings');
      errors.push(...invalid, ...(invalid.length === 0 ? (plugin.checkSettings?.(settings) ?? []) : []));
    }
    if (selection.mode === 'explicit' && (selection.vms ?? []).length === 0)
      errors.push({ field: 'selection.vms', message: 'must list at least one VM in explicit mode' });
    if (selection.mode === 'smart' && selection.vms !== undefined)
      errors.push({
        field: 'selection.vms',
        message: 'is for explicit mode; smart mode selects by tags, name pattern and power state',
      });
    errors.push(...(await this.checkPools(principal, selection)));
    const remotes = await this.dataSource
      .getRepository(RemoteEntity)
      .findBy({ id: In(remoteIds), tenantId: principal.tenantId });
    const missing = remoteIds.filter((rid) => !remotes.some((r) => r.id === rid));
    if (missing.length > 0)
      errors.push({ field: 'remoteIds', message: `names unknown remotes: ${missing.join(', ')}` });
    failIfAny(errors);
  }

  /** The pools a selection names: known ids of this tenant, or a pattern that matches some pool. */
  private async checkPools(principal: Principal, selection: JobSelection): Promise<FieldError[]> {
    const { pools, poolId } = selection;
    if (pools !== undefined && poolId !== undefined)
      return [
        { field: 'selection.pools', message: 'cannot be given with selection.poolId; keep pools only' },
      ];
    if (pools === undefined && poolId === undefined)
      return selection.mode === 'smart'
        ? [
            {
              field: 'selection.pools',
              message:
                'is required in smart mode: a list of pool ids, or a pattern over pool names ("*" for every pool)',
            },
          ]
        : [];
    const tenantPools = await this.dataSource
      .getRepository(PoolEntity)
      .find({ select: { id: true, name: true }, where: { tenantId: principal.tenantId } });
    if (typeof pools === 'string') {
      const problem =
        pools.trim() === ''
          ? 'is an empty pattern; give pool ids, or a pattern such as "*"'
          : pools.length > POOL_PATTERN_MAX
            ? `is a pattern longer than ${POOL_PATTERN_MAX} characters`
            : /\p{Cc}/u.test(pools)
              ? 'is a pattern with control characters'
              : tenantPools.some((pool) => globMatcher(pools)(pool.name))
                ? undefined
                : `"${pools}" matches no pool of this tenant (${
                    tenantPools.length === 0
                      ? 'it has none: add a pool first'
                      : `its pools: ${tenantPools
                          .map((pool) => pool.name)
                          .sort()
                          .join(', ')}`
                  })`;
      return problem === undefined ? [] : [{ field: 'selection.pools', message: problem }];
    }
    const field = pools === undefined ? 'selection.poolId' : 'selection.pools';
    const ids = pools ?? [poolId ?? ''];
    if (ids.length === 0) return [{ field, message: 'must list at least one pool id' }];
    const notIds = ids.filter((id) => typeof id !== 'string' || !isUuid(id));
    if (notIds.length > 0)
      return [{ field, message: `must hold pool ids (UUIDs); not one: ${notIds.map(String).join(', ')}` }];
    if (new Set(ids).size !== ids.length) return [{ field, message: 'lists a pool twice' }];
    const unknown = ids.filter((id) => !tenantPools.some((pool) => pool.id === id));
    if (unknown.length === 0) return [];
    return [
      pools === undefined
        ? { field, message: `is not a pool of this tenant (${unknown.join(', ')})` }
        : { field, message: `names pools that are not pools of this tenant: ${unknown.join(', ')}` },
    ];
  }

  private async find(principal: Principal, id: string): Promise<JobEntity> {
    const job = await this.dataSource
      .getRepository(JobEntity)
      .findOneBy({ id: validId(id), tenantId: principal.tenantId });
    if (!job) throw notFound('Job', id);
    return job;
  }
}

/** Why a run did not start, as the HTTP status an operator can act on. */
function runStartProblem(error: unknown, jobName: string): unknown {
  if (error instanceof BusNoRespondersError)
    return new ProblemException(
      HttpStatus.SERVICE_UNAVAILABLE,
      'No scheduler',
      `No scheduler service is running to start job "${jobName}"`,
    );
  if (error instanceof BusTimeoutError)
    return new ProblemException(
      HttpStatus.GATEWAY_TIMEOUT,
      'Scheduler timeout',
      `The scheduler did not answer in time for job "${jobName}"`,
    );
  if (error instanceof BusRemoteError) {
    const status =
      error.remoteCode === 'JOB_NOT_FOUND'
        ? HttpStatus.NOT_FOUND
        : error.remoteCode === 'PLAN_FAILED'
          ? HttpStatus.BAD_GATEWAY
          : HttpStatus.CONFLICT;
    return new ProblemException(status, 'Run not started', error.remoteMessage);
  }
  return error;
}
