import { Body, Controller, Delete, Get, HttpCode, Param, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiTags } from '@nestjs/swagger';
import { DataSource, IsNull } from 'typeorm';
import { ApiKeyEntity, createApiKey, type Role, TenantEntity } from '@haven/db';
import { notFound } from '@haven/service-core';
import type { JsonSchemaObject } from '@haven/plugin-sdk';
import { CurrentPrincipal, type Principal, RequireRole } from '../auth/principal';
import { parseBody } from '../http/request-body';
import { AuditTrail } from './audit.trail';
import { validId } from './tenants.controller';

const CREATE_KEY: JsonSchemaObject = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 100 },
    role: { enum: ['admin', 'operator', 'viewer'] },
    tenantId: {
      type: 'string',
      format: 'uuid',
      description: 'System admins only: create the key for this tenant',
    },
  },
  required: ['name', 'role'],
  additionalProperties: false,
};

function present(k: ApiKeyEntity) {
  return {
    id: k.id,
    tenantId: k.tenantId,
    name: k.name,
    role: k.role,
    createdAt: k.createdAt,
    lastUsedAt: k.lastUsedAt,
  };
}

/** API keys of the caller's tenant (system admins may create keys for any tenant). */
@ApiTags('api-keys')
@ApiBearerAuth()
@RequireRole('admin')
@Controller('api/v1/api-keys')
export class ApiKeysController {
  constructor(
    private readonly dataSource: DataSource,
    private readonly audit: AuditTrail,
  ) {}

  @Get()
  async list(@CurrentPrincipal() principal: Principal) {
    const keys = await this.dataSource
      .getRepository(ApiKeyEntity)
      .find({ where: { tenantId: principal.tenantId, revokedAt: IsNull() }, order: { createdAt: 'ASC' } });
    return { items: keys.map(present) };
  }

  /** The key is in this response only; Haven keeps just its hash. */
  @Post()
  @ApiBody({ schema: CREATE_KEY })
  async create(@CurrentPrincipal() principal: Principal, @Body() body: unknown) {
    const input = parseBody<{ name: string; role: Role; tenantId?: string }>(CREATE_KEY, body);
    let tenantId = principal.tenantId;
    if (input.tenantId !== undefined && input.tenantId !== principal.tenantId) {
      // Only system admins reach other tenants; to anyone else the tenant does not exist.
      const exists =
        principal.isSystemAdmin &&
        (await this.dataSource.getRepository(TenantEntity).existsBy({ id: input.tenantId }));
      if (!exists) throw notFound('Tenant', input.tenantId);
      tenantId = input.tenantId;
    }
    const { entity, key } = await createApiKey(this.dataSource, {
      tenantId,
      name: input.name,
      role: input.role,
    });
    await this.audit.record(
      tenantId,
      'api-key.create',
      'api-key',
      entity.id,
      { name: entity.name, role: entity.role },
      principal.keyId,
    );
    return { ...present(entity), key };
  }

  @Delete(':id')
  @HttpCode(204)
  async revoke(@CurrentPrincipal() principal: Principal, @Param('id') id: string): Promise<void> {
    const repository = this.dataSource.getRepository(ApiKeyEntity);
    const key = await repository.findOneBy({
      id: validId(id),
      tenantId: principal.tenantId,
      revokedAt: IsNull(),
    });
    if (!key) throw notFound('API key', id);
    await repository.update({ id: key.id }, { revokedAt: new Date() });
    await this.audit.record(principal.tenantId, 'api-key.revoke', 'api-key', key.id, {}, principal.keyId);
  }
}
