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
import { ApiBearerAuth, ApiBody, ApiTags } from '@nestjs/swagger';
import { DataSource } from 'typeorm';
import { RemoteEntity, type SecretBox } from '@haven/db';
import {
  conflict,
  HAVEN_PLUGINS,
  HAVEN_SECRETS,
  notFound,
  ProblemException,
  RemoteOpener,
  splitSecrets,
} from '@haven/service-core';
import { type JsonSchemaObject, type PluginRegistry, validateAgainstSchema } from '@haven/plugin-sdk';
import { isRemoteError } from '@haven/remote-sdk';
import { CurrentPrincipal, type Principal, RequireRole } from '../auth/principal';
import { failIfAny, parseBody } from '../http/request-body';
import { AuditTrail } from './audit.trail';
import { validId } from './tenants.controller';

const REMOTE_FIELDS = {
  name: { type: 'string', minLength: 1, maxLength: 100 },
  type: { type: 'string', description: 'A remote plugin type: local, nfs, smb, s3, azure, …' },
  settings: { type: 'object', description: "Validated against the remote type's schema" },
  enabled: { type: 'boolean' },
  encryption: {
    type: 'object',
    properties: { passphrase: { type: 'string', minLength: 12, writeOnly: true } },
    required: ['passphrase'],
    additionalProperties: false,
    description: 'Encrypts the backup repository on this remote; the passphrase is needed to restore',
  },
};
const CREATE_REMOTE: JsonSchemaObject = {
  type: 'object',
  properties: REMOTE_FIELDS,
  required: ['name', 'type', 'settings'],
  additionalProperties: false,
};
const UPDATE_REMOTE: JsonSchemaObject = {
  type: 'object',
  properties: { name: REMOTE_FIELDS.name, settings: REMOTE_FIELDS.settings, enabled: REMOTE_FIELDS.enabled },
  additionalProperties: false,
};

interface RemoteInput {
  name: string;
  type: string;
  settings: Record<string, unknown>;
  enabled?: boolean;
  encryption?: { passphrase: string };
}

@ApiTags('remotes')
@ApiBearerAuth()
@Controller('api/v1/remotes')
export class RemotesController {
  constructor(
    private readonly dataSource: DataSource,
    private readonly opener: RemoteOpener,
    @Inject(HAVEN_PLUGINS) private readonly plugins: PluginRegistry,
    @Inject(HAVEN_SECRETS) private readonly secrets: SecretBox,
    private readonly audit: AuditTrail,
  ) {}

  @Get()
  async list(@CurrentPrincipal() principal: Principal) {
    const remotes = await this.dataSource
      .getRepository(RemoteEntity)
      .find({ where: { tenantId: principal.tenantId }, order: { name: 'ASC' } });
    return { items: remotes.map((r) => this.present(r)) };
  }

  @Get(':id')
  async show(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    return this.present(await this.find(principal, id));
  }

  @Post()
  @RequireRole('admin')
  @ApiBody({ schema: CREATE_REMOTE })
  async create(@CurrentPrincipal() principal: Principal, @Body() body: unknown) {
    const input = parseBody<RemoteInput>(CREATE_REMOTE, body);
    if (!this.plugins.hasRemote(input.type)) {
      const known = this.plugins
        .list()
        .filter((p) => p.kind === 'remote')
        .map((p) => p.type);
      failIfAny([
        { field: 'type', message: `is not an installed remote type (installed: ${known.join(', ')})` },
      ]);
    }
    const plugin = this.plugins.remote(input.type);
    failIfAny(validateAgainstSchema(plugin.configSchema, input.settings, 'settings'));
    const repository = this.dataSource.getRepository(RemoteEntity);
    if (await repository.existsBy({ tenantId: principal.tenantId, name: input.name }))
      throw conflict(`A remote named "${input.name}" already exists`);
    await this.probe(input.type, input.name, input.settings);
    const id = randomUUID();
    const { visible, secret } = splitSecrets(plugin, input.settings);
    await repository.save(
      repository.create({
        id,
        tenantId: principal.tenantId,
        name: input.name,
        type: input.type,
        settings: visible,
        secretsSealed: this.opener.sealSecrets(id, secret),
        repositoryKeySealed: input.encryption
          ? this.secrets.seal(input.encryption.passphrase, `remote:${id}:repository-key`)
          : null,
        enabled: input.enabled ?? true,
        lastTest: null,
      }),
    );
    await this.audit.record(
      principal.tenantId,
      'remote.create',
      'remote',
      id,
      { name: input.name, type: input.type },
      principal.keyId,
    );
    return this.present(await repository.findOneByOrFail({ id }));
  }

  @Patch(':id')
  @RequireRole('admin')
  @ApiBody({ schema: UPDATE_REMOTE })
  async update(@CurrentPrincipal() principal: Principal, @Param('id') id: string, @Body() body: unknown) {
    const remote = await this.find(principal, id);
    const input = parseBody<Partial<RemoteInput>>(UPDATE_REMOTE, body);
    const repository = this.dataSource.getRepository(RemoteEntity);
    if (
      input.name !== undefined &&
      input.name !== remote.name &&
      (await repository.existsBy({ tenantId: principal.tenantId, name: input.name }))
    )
      throw conflict(`A remote named "${input.name}" already exists`);
    const changes: Partial<RemoteEntity> = {};
    if (input.name !== undefined) changes.name = input.name;
    if (input.enabled !== undefined) changes.enabled = input.enabled;
    if (input.settings !== undefined) {
      // Omitted secret fields keep their stored values, so a client never needs to know them.
      const plugin = this.plugins.remote(remote.type);
      const merged = { ...this.opener.settingsOf(remote), ...input.settings };
      failIfAny(validateAgainstSchema(plugin.configSchema, merged, 'settings'));
      await this.probe(remote.type, input.name ?? remote.name, merged);
      const { visible, secret } = splitSecrets(plugin, merged);
      changes.settings = visible;
      changes.secretsSealed = this.opener.sealSecrets(remote.id, secret);
    }
    await repository.save(repository.merge(remote, changes));
    await this.audit.record(
      principal.tenantId,
      'remote.update',
      'remote',
      remote.id,
      { fields: Object.keys(input) },
      principal.keyId,
    );
    return this.present(await repository.findOneByOrFail({ id: remote.id }));
  }

  @Delete(':id')
  @RequireRole('admin')
  @HttpCode(204)
  async remove(@CurrentPrincipal() principal: Principal, @Param('id') id: string): Promise<void> {
    const remote = await this.find(principal, id);
    await this.dataSource.getRepository(RemoteEntity).delete({ id: remote.id });
    await this.audit.record(principal.tenantId, 'remote.delete', 'remote', remote.id, {}, principal.keyId);
  }

  /** A remote that cannot be written with these settings is refused, with the remote's own reason. */
  private async probe(type: string, name: string, settings: Record<string, unknown>): Promise<void> {
    try {
      const store = await this.opener.openWith(type, name, settings);
      try {
        // Write, read back and delete a small object: listing alone succeeds on an empty, read-only or missing folder.
        const probeKey = `.haven-probe-${randomUUID()}`;
        await store.put(probeKey, Buffer.from('haven'));
        const echoed = await store.getBuffer(probeKey);
        await store.delete(probeKey);
        if (echoed.toString() !== 'haven')
          throw new Error('an object written to the remote read back different');
      } finally {
        await store.close();
      }
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      const code = isRemoteError(error) ? ` (${error.code})` : '';
      throw new ProblemException(
        HttpStatus.UNPROCESSABLE_ENTITY,
        'Remote unreachable',
        `Remote "${name}" could not be used${code}: ${reason}`,
      );
    }
  }

  private present(r: RemoteEntity) {
    const plugin = this.plugins.hasRemote(r.type) ? this.plugins.remote(r.type) : undefined;
    return {
      id: r.id,
      name: r.name,
      type: r.type,
      settings: r.settings,
      secretFieldsSet: r.secretsSealed === null ? [] : (plugin?.secretFields ?? []),
      encrypted: r.repositoryKeySealed !== null,
      enabled: r.enabled,
      lastTest: r.lastTest,
      createdAt: r.createdAt,
      updatedAt: r.updatedAt,
    };
  }

  private async find(principal: Principal, id: string): Promise<RemoteEntity> {
    const remote = await this.dataSource
      .getRepository(RemoteEntity)
      .findOneBy({ id: validId(id), tenantId: principal.tenantId });
    if (!remote) throw notFound('Remote', id);
    return remote;
  }
}
