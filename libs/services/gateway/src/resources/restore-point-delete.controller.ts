import { Controller, Delete, HttpCode, Inject, Param } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { DataSource } from 'typeorm';
import type { Bus } from '@haven/bus';
import { DELETE_RESTORE_POINT } from '@haven/contracts';
import { RestorePointEntity } from '@haven/db';
import { HAVEN_BUS, notFound } from '@haven/service-core';
import { CurrentPrincipal, type Principal, RequireRole } from '../auth/principal';
import { AuditTrail } from './audit.trail';
import { validId } from './tenants.controller';
import { runStartProblem } from './run-start.problem';

/**
 * Deletes one restore point by hand, as a durable run: a transfer worker deletes it from its remote,
 * the catalog then drops it and collects the remote's garbage (as after retention).
 */
@ApiTags('restore-points')
@ApiBearerAuth()
@Controller('api/v1/restore-points')
export class RestorePointDeleteController {
  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_BUS) private readonly bus: Bus,
    private readonly audit: AuditTrail,
  ) {}

  /** Starts the deletion; follow it with GET /runs/:id or the SSE stream /runs/:id/events. */
  @Delete(':id')
  @RequireRole('operator')
  @HttpCode(202)
  async remove(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    const point = await this.dataSource
      .getRepository(RestorePointEntity)
      .findOneBy({ id: validId(id), tenantId: principal.tenantId });
    if (!point) throw notFound('Restore point', id);
    try {
      const reply = await this.bus.request(
        DELETE_RESTORE_POINT,
        { tenantId: principal.tenantId, restorePointId: point.id },
        { timeoutMs: 30_000 },
      );
      await this.audit.record(
        principal.tenantId,
        'restore-point.delete',
        'restore-point',
        point.id,
        { runId: reply.runId, remoteId: point.remoteId, manifestKey: point.manifestKey },
        principal.keyId,
      );
      return { runId: reply.runId, tasks: reply.tasks, events: `/api/v1/runs/${reply.runId}/events` };
    } catch (error) {
      throw runStartProblem(error, { run: 'deletion', notFoundCodes: ['RESTORE_POINT_NOT_FOUND'] });
    }
  }
}
