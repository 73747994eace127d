import { Body, Controller, HttpCode, Inject, Param, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiTags } from '@nestjs/swagger';
import { DataSource } from 'typeorm';
import type { Bus } from '@haven/bus';
import { START_RESTORE } from '@haven/contracts';
import { PoolEntity, RestorePointEntity } from '@haven/db';
import type { JsonSchemaObject } from '@haven/plugin-sdk';
import { HAVEN_BUS, notFound } from '@haven/service-core';
import { CurrentPrincipal, type Principal } from '../auth/principal';
import { parseBody } from '../http/request-body';
import { AuditTrail } from './audit.trail';
import { validId } from './tenants.controller';
import { runStartProblem } from './run-start.problem';

const RESTORE_BODY: JsonSchemaObject = {
  type: 'object',
  properties: {
    poolId: { type: 'string', format: 'uuid', description: 'A pool of this tenant' },
    srUuid: {
      type: 'string',
      minLength: 1,
      description: "SR of the new disks (default: the pool's default SR)",
    },
    name: { type: 'string', minLength: 1, maxLength: 200, description: 'Name of the new VM' },
    keepMacs: {
      type: 'boolean',
      description:
        'Give the network interfaces the MAC addresses recorded at backup (default false: new ones, so the copy never clashes with a running original)',
    },
  },
  required: ['poolId'],
  additionalProperties: false,
};

/** Restores a restore point as a new VM, as a durable run followed like any other run. */
@ApiTags('restore-points')
@ApiBearerAuth()
@Controller('api/v1/restore-points')
export class RestorePointRestoreController {
  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_BUS) private readonly bus: Bus,
    private readonly audit: AuditTrail,
  ) {}

  /** Starts the restore; follow it with GET /runs/:id or the SSE stream /runs/:id/events. */
  @Post(':id/restore')
  @HttpCode(202)
  @ApiBody({ schema: RESTORE_BODY })
  async restore(@CurrentPrincipal() principal: Principal, @Param('id') id: string, @Body() body: unknown) {
    const point = await this.dataSource
      .getRepository(RestorePointEntity)
      .findOneBy({ id: validId(id), tenantId: principal.tenantId });
    if (!point) throw notFound('Restore point', id);
    const input = parseBody<{ poolId: string; srUuid?: string; name?: string; keepMacs?: boolean }>(
      RESTORE_BODY,
      body ?? {},
    );
    const pool = await this.dataSource
      .getRepository(PoolEntity)
      .findOneBy({ id: input.poolId, tenantId: principal.tenantId });
    if (!pool) throw notFound('Pool', input.poolId);
    try {
      const reply = await this.bus.request(
        START_RESTORE,
        {
          tenantId: principal.tenantId,
          restorePointId: point.id,
          poolId: pool.id,
          ...(input.srUuid === undefined ? {} : { srUuid: input.srUuid }),
          ...(input.name === undefined ? {} : { name: input.name }),
          ...(input.keepMacs === undefined ? {} : { keepMacs: input.keepMacs }),
        },
        { timeoutMs: 30_000 },
      );
      await this.audit.record(
        principal.tenantId,
        'restore-point.restore',
        'restore-point',
        point.id,
        { runId: reply.runId, poolId: pool.id },
        principal.keyId,
      );
      return { runId: reply.runId, tasks: reply.tasks, events: `/api/v1/runs/${reply.runId}/events` };
    } catch (error) {
      throw runStartProblem(error, {
        run: 'restore',
        notFoundCodes: ['RESTORE_POINT_NOT_FOUND', 'POOL_NOT_FOUND'],
      });
    }
  }
}
