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
import {
  insertRestorePoint,
  newestCatalogRestorePointKey,
  recordRemoteRepository,
  RemoteEntity,
  type SecretBox,
} from '@haven/db';
import { ArchiveStore } from '@haven/job-backup-full/archive';
import { manifestKey } from '@haven/repository';
import {
  conflict,
  HAVEN_PLUGINS,
  HAVEN_SECRETS,
  notFound,
  ProblemException,
  RemoteOpener,
  RepositoryOpener,
  splitSecrets,
} from '@haven/service-core';
import { type JsonSchemaObject, type PluginRegistry, validateAgainstSchema } from '@haven/plugin-sdk';
import { isRemoteError, type RemoteTestResult, testRemote } from '@haven/remote-sdk';
import { CurrentPrincipal, type Principal, RequireRole } from '../auth/principal';
import { failIfAny, parseBody } from '../http/request-body';
import { AuditTrail } from './audit.trail';
import { validId } from './tenants.controller';
import type { QueryDeepPartialEntity } from 'typeorm/query-builder/QueryPartialEntity';

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
    private readonly repositories: RepositoryOpener,
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
    // Only the changed columns: a save of the row loaded before the self-test (seconds) would write
    // back the repository id as it was then, erasing one a backup recorded meanwhile.
    if (Object.keys(changes).length > 0)
      await repository.update(
        { id: remote.id, tenantId: principal.tenantId },
        // A jsonb column's Record type is wider than TypeORM's partial-entity type says.
        changes as QueryDeepPartialEntity<RemoteEntity>,
      );
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

  /**
   * Writes, reads back, lists and deletes test objects on the remote; answers throughput, latency,
   * capacity and any problem in plain words, and keeps the result with the remote.
   */
  @Post(':id/test')
  @RequireRole('operator')
  @HttpCode(200)
  async test(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    const remote = await this.find(principal, id);
    let result: RemoteTestResult;
    try {
      const store = await this.opener.open(remote);
      try {
        result = await testRemote(store);
      } finally {
        await store.close();
      }
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      result = {
        remote: remote.name,
        type: remote.type,
        ok: false,
        testedAt: new Date().toISOString(),
        durationMs: 0,
        steps: [],
        problems: [`Remote "${remote.name}" could not be opened: ${reason}`],
      };
    }
    await this.dataSource
      .getRepository(RemoteEntity)
      .update({ id: remote.id }, { lastTest: result as unknown as Record<string, never> });
    await this.audit.record(
      principal.tenantId,
      'remote.test',
      'remote',
      remote.id,
      { ok: result.ok },
      principal.keyId,
    );
    return result;
  }

  /**
   * Rebuilds the catalog's list of this remote's restore points from the manifests on the remote
   * (restore points and full-backup archives; after losing the database, or to adopt a
   * repository on a remote added for it): missing ones are added, none removed. The repository
   * read becomes the remote's recorded one; another than the one recorded is refused, and so is,
   * on a remote from before ids were recorded, one without the catalog's newest restore point there.
   */
  @Post(':id/sync')
  @RequireRole('admin')
  @HttpCode(200)
  async sync(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    const remote = await this.find(principal, id);
    let opened;
    try {
      opened = await this.repositories.open(remote);
    } catch (error) {
      throw new ProblemException(
        HttpStatus.UNPROCESSABLE_ENTITY,
        'Repository unreadable',
        `The repository on remote "${remote.name}" could not be opened: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    let found = 0;
    let added = 0;
    try {
      // The repository synced from is the remote's from now on (backups refuse another there).
      if (remote.repositoryId === null) {
        // A remote from before ids were recorded: as a backup would, adopt only the repository its
        // backups went to, the one holding the newest restore point the catalog lists on it.
        const newest = await newestCatalogRestorePointKey(
          this.dataSource.manager,
          principal.tenantId,
          remote.id,
        );
        if (newest !== undefined && !(await opened.repository.store.exists(newest)))
          throw conflict(
            `Remote "${remote.name}" holds repository ${opened.repository.id}, which does not hold ${newest}, the newest restore point the catalog lists on this remote: its storage is not where the backups went (another bucket, prefix or folder?). Make the remote's storage available again; if that repository is lost for good, add this storage as a new remote and sync that one`,
          );
        const recorded = await recordRemoteRepository(
          this.dataSource.manager,
          principal.tenantId,
          remote.id,
          opened.repository.id,
        );
        if (recorded === undefined) throw notFound('Remote', id);
        if (recorded !== opened.repository.id)
          throw conflict(
            `Remote "${remote.name}" holds repository ${opened.repository.id}, but a backup recorded repository ${recorded} for it meanwhile: its storage is not the same for every Haven process (a share mounted on one machine and not on another?); make it so, then sync again`,
          );
      }
      for (const { manifest } of await opened.repository.listRestorePoints()) {
        found++;
        const inserted = await insertRestorePoint(this.dataSource.manager, {
          tenantId: principal.tenantId,
          remoteId: remote.id,
          jobId: manifest.job?.id ?? null,
          runId: null,
          vmUuid: manifest.vm.uuid,
          vmName: manifest.vm.name,
          kind: manifest.disks.some((disk) => disk.base !== undefined) ? 'incremental' : 'full',
          manifestKey: manifestKey(manifest.id),
          logicalBytes: manifest.sizes.logicalBytes,
          storedBytes: manifest.sizes.uploadedBytes,
          gfsTags: manifest.gfsTags ?? [],
          takenAt: manifest.createdAt,
          committedAt: manifest.committedAt,
        });
        if (inserted) added++;
      }
      // Full-backup archives (backup.full) live beside the repository's restore points.
      for (const { manifestKey: key, manifest } of await ArchiveStore.forRepository(
        opened.repository,
      ).list()) {
        found++;
        const inserted = await insertRestorePoint(this.dataSource.manager, {
          tenantId: principal.tenantId,
          remoteId: remote.id,
          jobId: manifest.job?.id ?? null,
          runId: null,
          vmUuid: manifest.vm.uuid,
          vmName: manifest.vm.name,
          kind: 'full',
          manifestKey: key,
          logicalBytes: manifest.totalSize,
          storedBytes: manifest.storedSize,
          gfsTags: manifest.gfsTags ?? [],
          takenAt: manifest.takenAt,
          committedAt: manifest.createdAt,
        });
        if (inserted) added++;
      }
    } finally {
      await opened.close();
    }
    await this.audit.record(
      principal.tenantId,
      'remote.sync',
      'remote',
      remote.id,
      { found, added },
      principal.keyId,
    );
    return { remote: remote.name, repositoryId: opened.repository.id, found, added };
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
    let problem: string | undefined;
    try {
      const store = await this.opener.openWith(type, name, settings);
      try {
        // A light self-test: listing alone succeeds on an empty, read-only or missing folder.
        const result = await testRemote(store, { largeObjects: 0, smallObjects: 1 });
        if (!result.ok) problem = result.problems.join('; ');
      } finally {
        await store.close();
      }
    } catch (error) {
      const code = isRemoteError(error) ? ` (${error.code})` : '';
      problem = `${error instanceof Error ? error.message : String(error)}${code}`;
    }
    if (problem !== undefined)
      throw new ProblemException(
        HttpStatus.UNPROCESSABLE_ENTITY,
        'Remote unusable',
        `Remote "${name}" could not be used: ${problem}`,
      );
  }

  private present(r: RemoteEntity) {
    const plugin = this.plugins.hasRemote(r.type) ? this.plugins.remote(r.type) : undefined;
    return {
      id: r.id,
      name: r.name,
      type: r.type,
      settings: r.settings,
      // Which settings of this type are secrets (kept sealed, never returned), and whether any is set.
      secretFields: plugin?.secretFields ?? [],
      hasSecrets: r.secretsSealed !== null,
      encrypted: r.repositoryKeySealed !== null,
      // The repository the remote holds, recorded at its first use (null before): another one or none there is refused.
      repositoryId: r.repositoryId,
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
