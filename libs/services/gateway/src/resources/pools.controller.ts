import { randomUUID } from 'node:crypto';
import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Patch, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiTags } from '@nestjs/swagger';
import { DataSource } from 'typeorm';
import { PoolEntity, type SecretBox } from '@haven/db';
import { conflict, HAVEN_SECRETS, notFound } from '@haven/service-core';
import type { JsonSchemaObject } from '@haven/plugin-sdk';
import { CurrentPrincipal, type Principal, RequireRole } from '../auth/principal';
import { parseBody } from '../http/request-body';
import { AuditTrail } from './audit.trail';
import { validId } from './tenants.controller';

const POOL_FIELDS = {
  name: { type: 'string', minLength: 1, maxLength: 100 },
  url: { type: 'string', pattern: '^https?://[^\\s]+$', description: 'XAPI URL of the pool master' },
  username: { type: 'string', minLength: 1 },
  password: { type: 'string', minLength: 1, writeOnly: true },
  allowUnauthorized: { type: 'boolean', description: 'Accept a self-signed TLS certificate' },
};
const CREATE_POOL: JsonSchemaObject = {
  type: 'object',
  properties: POOL_FIELDS,
  required: ['name', 'url', 'username', 'password'],
  additionalProperties: false,
};
const UPDATE_POOL: JsonSchemaObject = {
  type: 'object',
  properties: POOL_FIELDS,
  additionalProperties: false,
};

interface PoolInput {
  name: string;
  url: string;
  username: string;
  password: string;
  allowUnauthorized?: boolean;
}

/** The password never leaves: responses say only that one is set. */
function present(p: PoolEntity) {
  return {
    id: p.id,
    name: p.name,
    url: p.url,
    username: p.username,
    hasPassword: true,
    allowUnauthorized: p.allowUnauthorized,
    createdAt: p.createdAt,
    updatedAt: p.updatedAt,
  };
}

@ApiTags('pools')
@ApiBearerAuth()
@Controller('api/v1/pools')
export class PoolsController {
  constructor(
    private readonly dataSource: DataSource,
    @Inject(HAVEN_SECRETS) private readonly secrets: SecretBox,
    private readonly audit: AuditTrail,
  ) {}

  @Get()
  async list(@CurrentPrincipal() principal: Principal) {
    const pools = await this.dataSource
      .getRepository(PoolEntity)
      .find({ where: { tenantId: principal.tenantId }, order: { name: 'ASC' } });
    return { items: pools.map(present) };
  }

  @Get(':id')
  async show(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    return present(await this.find(principal, id));
  }

  @Post()
  @RequireRole('admin')
  @ApiBody({ schema: CREATE_POOL })
  async create(@CurrentPrincipal() principal: Principal, @Body() body: unknown) {
    const input = parseBody<PoolInput>(CREATE_POOL, body);
    const repository = this.dataSource.getRepository(PoolEntity);
    if (await repository.existsBy({ tenantId: principal.tenantId, name: input.name }))
      throw conflict(`A pool named "${input.name}" already exists`);
    const id = randomUUID();
    const pool = repository.create({
      id,
      tenantId: principal.tenantId,
      name: input.name,
      url: input.url,
      username: input.username,
      passwordSealed: this.secrets.seal(input.password, `pool:${id}:password`),
      allowUnauthorized: input.allowUnauthorized ?? false,
    });
    await repository.insert(pool);
    await this.audit.record(
      principal.tenantId,
      'pool.create',
      'pool',
      id,
      { name: pool.name, url: pool.url },
      principal.keyId,
    );
    return present(await repository.findOneByOrFail({ id }));
  }

  @Patch(':id')
  @RequireRole('admin')
  @ApiBody({ schema: UPDATE_POOL })
  async update(@CurrentPrincipal() principal: Principal, @Param('id') id: string, @Body() body: unknown) {
    const pool = await this.find(principal, id);
    const input = parseBody<Partial<PoolInput>>(UPDATE_POOL, body);
    const repository = this.dataSource.getRepository(PoolEntity);
    if (
      input.name !== undefined &&
      input.name !== pool.name &&
      (await repository.existsBy({ tenantId: principal.tenantId, name: input.name }))
    )
      throw conflict(`A pool named "${input.name}" already exists`);
    await repository.update(
      { id: pool.id },
      {
        ...(input.name === undefined ? {} : { name: input.name }),
        ...(input.url === undefined ? {} : { url: input.url }),
        ...(input.username === undefined ? {} : { username: input.username }),
        ...(input.allowUnauthorized === undefined ? {} : { allowUnauthorized: input.allowUnauthorized }),
        ...(input.password === undefined
          ? {}
          : { passwordSealed: this.secrets.seal(input.password, `pool:${pool.id}:password`) }),
      },
    );
    await this.audit.record(
      principal.tenantId,
      'pool.update',
      'pool',
      pool.id,
      { fields: Object.keys(input) },
      principal.keyId,
    );
    return present(await repository.findOneByOrFail({ id: pool.id }));
  }

  @Delete(':id')
  @RequireRole('admin')
  @HttpCode(204)
  async remove(@CurrentPrincipal() principal: Principal, @Param('id') id: string): Promise<void> {
    const pool = await this.find(principal, id);
    await this.dataSource.getRepository(PoolEntity).delete({ id: pool.id });
    await this.audit.record(principal.tenantId, 'pool.delete', 'pool', pool.id, {}, principal.keyId);
  }

  private async find(principal: Principal, id: string): Promise<PoolEntity> {
    const pool = await this.dataSource
      .getRepository(PoolEntity)
      .findOneBy({ id: validId(id), tenantId: principal.tenantId });
    if (!pool) throw notFound('Pool', id);
    return pool;
  }
}
