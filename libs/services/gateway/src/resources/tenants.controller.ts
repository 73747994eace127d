import { randomUUID } from 'node:crypto';
import { Body, Controller, Delete, Get, HttpCode, Param, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiTags } from '@nestjs/swagger';
import { DataSource } from 'typeorm';
import { TenantEntity } from '@haven/db';
import { conflict, notFound } from '@haven/service-core';
import type { JsonSchemaObject } from '@haven/plugin-sdk';
import { RequireRole } from '../auth/principal';
import { parseBody } from '../http/request-body';
import { AuditTrail } from './audit.trail';

const CREATE_TENANT: JsonSchemaObject = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9][A-Za-z0-9 ._-]*$' },
  },
  required: ['name'],
  additionalProperties: false,
};

function present(t: TenantEntity) {
  return { id: t.id, name: t.name, isSystem: t.isSystem, createdAt: t.createdAt };
}

/** Tenants are managed by admins of the system tenant only. */
@ApiTags('tenants')
@ApiBearerAuth()
@RequireRole('system-admin')
@Controller('api/v1/tenants')
export class TenantsController {
  constructor(
    private readonly dataSource: DataSource,
    private readonly audit: AuditTrail,
  ) {}

  @Get()
  async list() {
    const tenants = await this.dataSource.getRepository(TenantEntity).find({ order: { createdAt: 'ASC' } });
    return { items: tenants.map(present) };
  }

  @Get(':id')
  async show(@Param('id') id: string) {
    const tenant = await this.dataSource.getRepository(TenantEntity).findOneBy({ id: validId(id) });
    if (!tenant) throw notFound('Tenant', id);
    return present(tenant);
  }

  @Post()
  @ApiBody({ schema: CREATE_TENANT })
  async create(@Body() body: unknown) {
    const input = parseBody<{ name: string }>(CREATE_TENANT, body);
    const repository = this.dataSource.getRepository(TenantEntity);
    if (await repository.existsBy({ name: input.name }))
      throw conflict(`A tenant named "${input.name}" already exists`);
    const tenant = repository.create({ id: randomUUID(), name: input.name, isSystem: false });
    await repository.insert(tenant);
    await this.audit.record(tenant.id, 'tenant.create', 'tenant', tenant.id, { name: tenant.name });
    return present(tenant);
  }

  @Delete(':id')
  @HttpCode(204)
  async remove(@Param('id') id: string): Promise<void> {
    const repository = this.dataSource.getRepository(TenantEntity);
    const tenant = await repository.findOneBy({ id: validId(id) });
    if (!tenant) throw notFound('Tenant', id);
    if (tenant.isSystem) throw conflict('The system tenant cannot be deleted');
    await repository.delete({ id: tenant.id });
  }
}

/** A malformed id cannot name anything: answer 404 like any unknown id. */
export function validId(id: string): string {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)
    ? id
    : '00000000-0000-0000-0000-000000000000';
}
