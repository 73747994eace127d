import { randomUUID } from 'node:crypto';
import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiTags } from '@nestjs/swagger';
import { Cron } from 'croner';
import { DataSource } from 'typeorm';
import { JobEntity, ScheduleEntity } from '@haven/db';
import { notFound } from '@haven/service-core';
import type { FieldError, JsonSchemaObject } from '@haven/plugin-sdk';
import { CurrentPrincipal, type Principal } from '../auth/principal';
import { failIfAny, isUuid, parseBody } from '../http/request-body';
import { AuditTrail } from './audit.trail';
import { validId } from './tenants.controller';

const GFS = {
  type: 'object',
  properties: {
    daily: { type: 'integer', minimum: 1, maximum: 3660 },
    weekly: { type: 'integer', minimum: 1, maximum: 520 },
    monthly: { type: 'integer', minimum: 1, maximum: 1200 },
    yearly: { type: 'integer', minimum: 1, maximum: 100 },
  },
  additionalProperties: false,
  minProperties: 1,
};
const RETENTION = {
  type: 'object',
  properties: {
    keep: {
      type: 'integer',
      minimum: 1,
      maximum: 10000,
      description: 'Restore points of this schedule kept on each remote',
    },
    snapshotsToKeep: {
      type: 'integer',
      minimum: 0,
      maximum: 100,
      description: 'Backup snapshots kept on the host',
    },
    gfs: { ...GFS, description: 'Long-term retention: oldest restore point of each day/week/month/year' },
  },
  additionalProperties: false,
  minProperties: 1,
};
const SCHEDULE_FIELDS = {
  jobId: { type: 'string', format: 'uuid' },
  name: { type: 'string', minLength: 1, maxLength: 100 },
  cron: { type: 'string', minLength: 1, description: 'Cron expression (5 or 6 fields)' },
  timezone: { type: 'string', minLength: 1, description: 'IANA time zone, e.g. Europe/Paris' },
  enabled: { type: 'boolean' },
  retention: RETENTION,
};
const CREATE_SCHEDULE: JsonSchemaObject = {
  type: 'object',
  properties: SCHEDULE_FIELDS,
  required: ['jobId', 'name', 'cron', 'timezone', 'retention'],
  additionalProperties: false,
};
const UPDATE_SCHEDULE: JsonSchemaObject = {
  type: 'object',
  properties: {
    name: SCHEDULE_FIELDS.name,
    cron: SCHEDULE_FIELDS.cron,
    timezone: SCHEDULE_FIELDS.timezone,
    enabled: SCHEDULE_FIELDS.enabled,
    retention: RETENTION,
  },
  additionalProperties: false,
};

interface Retention {
  keep?: number;
  snapshotsToKeep?: number;
  gfs?: Record<string, number>;
}
interface ScheduleInput {
  jobId: string;
  name: string;
  cron: string;
  timezone: string;
  enabled?: boolean;
  retention: Retention;
}

/** The next time a cron fires in a zone, or the reasons it cannot. */
export function checkTiming(cron: string, timezone: string): { errors: FieldError[]; next?: Date } {
  const errors: FieldError[] = [];
  try {
    new Intl.DateTimeFormat('en', { timeZone: timezone });
  } catch {
    errors.push({ field: 'timezone', message: `is not a known IANA time zone ("${timezone}")` });
  }
  let next: Date | undefined;
  try {
    const job = new Cron(cron, { paused: true, timezone: errors.length === 0 ? timezone : undefined });
    next = job.nextRun() ?? undefined;
    job.stop();
  } catch (error) {
    errors.push({ field: 'cron', message: `is not a valid cron expression: ${(error as Error).message}` });
  }
  return { errors, next };
}

function retentionErrors(retention: Retention): FieldError[] {
  // The user guide's warning, enforced: schedule retention and GFS on one schedule keep duplicates.
  if (retention.gfs !== undefined && retention.keep !== undefined)
    return [
      {
        field: 'retention',
        message:
          'combines keep with gfs: the schedule would keep the same restore points twice; use gfs alone (long-term) or keep alone, on separate schedules',
      },
    ];
  return [];
}

function present(s: ScheduleEntity) {
  return {
    id: s.id,
    jobId: s.jobId,
    name: s.name,
    cron: s.cron,
    timezone: s.timezone,
    enabled: s.enabled,
    retention: s.retention,
    lastFiredAt: s.lastFiredAt,
    nextFireAt: s.nextFireAt,
    createdAt: s.createdAt,
  };
}

@ApiTags('schedules')
@ApiBearerAuth()
@Controller('api/v1/schedules')
export class SchedulesController {
  constructor(
    private readonly dataSource: DataSource,
    private readonly audit: AuditTrail,
  ) {}

  @Get()
  async list(@CurrentPrincipal() principal: Principal, @Query('jobId') jobId?: string) {
    if (jobId !== undefined && !isUuid(jobId)) failIfAny([{ field: 'jobId', message: 'must be a UUID' }]);
    const schedules = await this.dataSource.getRepository(ScheduleEntity).find({
      where: { tenantId: principal.tenantId, ...(jobId === undefined ? {} : { jobId }) },
      order: { createdAt: 'ASC' },
    });
    return { items: schedules.map(present) };
  }

  @Get(':id')
  async show(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    return present(await this.find(principal, id));
  }

  @Post()
  @ApiBody({ schema: CREATE_SCHEDULE })
  async create(@CurrentPrincipal() principal: Principal, @Body() body: unknown) {
    const input = parseBody<ScheduleInput>(CREATE_SCHEDULE, body);
    const timing = checkTiming(input.cron, input.timezone);
    const errors = [...timing.errors, ...retentionErrors(input.retention)];
    if (
      !(await this.dataSource
        .getRepository(JobEntity)
        .existsBy({ id: input.jobId, tenantId: principal.tenantId }))
    )
      errors.push({ field: 'jobId', message: `is not a job of this tenant (${input.jobId})` });
    failIfAny(errors);
    const id = randomUUID();
    const repository = this.dataSource.getRepository(ScheduleEntity);
    await repository.save(
      repository.create({
        id,
        tenantId: principal.tenantId,
        jobId: input.jobId,
        name: input.name,
        cron: input.cron,
        timezone: input.timezone,
        enabled: input.enabled ?? true,
        retention: input.retention as Record<string, unknown>,
        lastFiredAt: null,
        nextFireAt: timing.next ?? null,
      }),
    );
    await this.audit.record(
      principal.tenantId,
      'schedule.create',
      'schedule',
      id,
      { jobId: input.jobId, cron: input.cron },
      principal.keyId,
    );
    return present(await repository.findOneByOrFail({ id }));
  }

  @Patch(':id')
  @ApiBody({ schema: UPDATE_SCHEDULE })
  async update(@CurrentPrincipal() principal: Principal, @Param('id') id: string, @Body() body: unknown) {
    const schedule = await this.find(principal, id);
    const input = parseBody<Partial<ScheduleInput>>(UPDATE_SCHEDULE, body);
    const cron = input.cron ?? schedule.cron;
    const timezone = input.timezone ?? schedule.timezone;
    const retention = input.retention ?? schedule.retention;
    const timing = checkTiming(cron, timezone);
    failIfAny([...timing.errors, ...retentionErrors(retention)]);
    const repository = this.dataSource.getRepository(ScheduleEntity);
    await repository.save(
      repository.merge(schedule, {
        ...(input.name === undefined ? {} : { name: input.name }),
        ...(input.enabled === undefined ? {} : { enabled: input.enabled }),
        cron,
        timezone,
        retention: retention as Record<string, unknown>,
        nextFireAt: timing.next ?? null,
      }),
    );
    await this.audit.record(
      principal.tenantId,
      'schedule.update',
      'schedule',
      schedule.id,
      { fields: Object.keys(input) },
      principal.keyId,
    );
    return present(await repository.findOneByOrFail({ id: schedule.id }));
  }

  @Delete(':id')
  @HttpCode(204)
  async remove(@CurrentPrincipal() principal: Principal, @Param('id') id: string): Promise<void> {
    const schedule = await this.find(principal, id);
    await this.dataSource.getRepository(ScheduleEntity).delete({ id: schedule.id });
    await this.audit.record(
      principal.tenantId,
      'schedule.delete',
      'schedule',
      schedule.id,
      {},
      principal.keyId,
    );
  }

  private async find(principal: Principal, id: string): Promise<ScheduleEntity> {
    const schedule = await this.dataSource
      .getRepository(ScheduleEntity)
      .findOneBy({ id: validId(id), tenantId: principal.tenantId });
    if (!schedule) throw notFound('Schedule', id);
    return schedule;
  }
}
