import { Body, Controller, HttpCode, Inject, Param, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiTags } from '@nestjs/swagger';
import { DataSource } from 'typeorm';
import type { Bus } from '@haven/bus';
import { type MaintenanceKind, START_MAINTENANCE } from '@haven/contracts';
import { RemoteEntity } from '@haven/db';
import type { JsonSchemaObject } from '@haven/plugin-sdk';
import { HAVEN_BUS, notFound } from '@haven/service-core';
import { CurrentPrincipal, type Principal, RequireRole } from '../auth/principal';
import { parseBody } from '../http/request-body';
import { AuditTrail } from './audit.trail';
import { validId } from './tenants.controller';
import { runStartProblem } from './run-start.problem';

const GC_BODY: JsonSchemaObject = {
  type: 'object',
  properties: {
    safetyWindowMinutes: {
      type: 'integer',
      minimum: 0,
      maximum: 525_600,
      description:
        'Chunks younger than this are kept (a backup still writing may rely on them). Default 1440 (24 h); 0 frees every unreferenced chunk now, only safe when no backup writes to this remote.',
    },
  },
  additionalProperties: false,
};

const VERIFY_BODY: JsonSchemaObject = {
  type: 'object',
  properties: {
    sample: {
      type: 'number',
      exclusiveMinimum: 0,
      description:
        'Re-hash only part of the chunks (and of the backup.full archive segments): a fraction (0 < sample < 1) or a count (>= 1). Default: every one. Presence of every referenced chunk and listed segment is always checked.',
    },
  },
  additionalProperties: false,
};

/**
 * Repository maintenance of a remote as runs any transfer worker executes: garbage collection
 * (frees chunks no restore point references) and verify (re-hashes chunks, marks the restore
 * points a bad chunk breaks as damaged). Follow them like any run.
 */
@ApiTags('remotes')
@ApiBearerAuth()
@Controller('api/v1/remotes')
export class RemoteMaintenanceController {
  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_BUS) private readonly bus: Bus,
    private readonly audit: AuditTrail,
  ) {}

  /** Starts a garbage collection of the remote's repository (a run of kind gc). */
  @Post(':id/gc')
  @RequireRole('operator')
  @HttpCode(202)
  @ApiBody({ schema: GC_BODY, required: false })
  async gc(@CurrentPrincipal() principal: Principal, @Param('id') id: string, @Body() body: unknown) {
    const input = parseBody<{ safetyWindowMinutes?: number }>(GC_BODY, body ?? {});
    return this.start(principal, id, 'gc', {
      ...(input.safetyWindowMinutes === undefined
        ? {}
        : { safetyWindowMs: input.safetyWindowMinutes * 60_000 }),
    });
  }

  /** Starts a verify of the remote's repository (a run of kind verify). */
  @Post(':id/verify')
  @RequireRole('operator')
  @HttpCode(202)
  @ApiBody({ schema: VERIFY_BODY, required: false })
  async verify(@CurrentPrincipal() principal: Principal, @Param('id') id: string, @Body() body: unknown) {
    const input = parseBody<{ sample?: number }>(VERIFY_BODY, body ?? {});
    return this.start(principal, id, 'verify', input.sample === undefined ? {} : { sample: input.sample });
  }

  private async start(
    principal: Principal,
    id: string,
    kind: MaintenanceKind,
    options: { safetyWindowMs?: number; sample?: number },
  ) {
    const remote = await this.dataSource
      .getRepository(RemoteEntity)
      .findOneBy({ id: validId(id), tenantId: principal.tenantId });
    if (!remote) throw notFound('Remote', id);
    try {
      const reply = await this.bus.request(
        START_MAINTENANCE,
        { tenantId: principal.tenantId, remoteId: remote.id, kind, trigger: 'manual', ...options },
        { timeoutMs: 30_000 },
      );
      await this.audit.record(
        principal.tenantId,
        `remote.${kind}`,
        'remote',
        remote.id,
        { runId: reply.runId, ...options },
        principal.keyId,
      );
      return { runId: reply.runId, tasks: reply.tasks, events: `/api/v1/runs/${reply.runId}/events` };
    } catch (error) {
      throw runStartProblem(error, { run: 'run', notFoundCodes: ['REMOTE_NOT_FOUND'] });
    }
  }
}
