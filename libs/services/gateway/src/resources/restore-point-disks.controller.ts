import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { Controller, Get, HttpStatus, Param, Query, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { DataSource } from 'typeorm';
import { RemoteEntity, RestorePointEntity } from '@haven/db';
import { ArchiveError, ArchiveStore, isArchiveManifestKey } from '@haven/job-backup-full/archive';
import { restorePointIdOfKey, type DiskReader } from '@haven/repository';
import {
  badRequest,
  notFound,
  type OpenedRepository,
  ProblemException,
  RepositoryOpener,
} from '@haven/service-core';
import { CurrentPrincipal, type Principal } from '../auth/principal';
import { validId } from './tenants.controller';

/** Largest piece read from the repository at a time when serving a byte range. */
const RANGE_PIECE = 2 * 1024 * 1024;

/** `bytes=a-b`, `bytes=a-` or `bytes=-n` within `size`; undefined for a header we do not serve. */
function parseRange(
  header: string,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | undefined {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return undefined;
  const [, from = '', to = ''] = match;
  if (from === '' && to === '') return undefined;
  let start: number;
  let end: number;
  if (from === '') {
    start = Math.max(0, size - Number(to));
    end = size - 1;
  } else {
    start = Number(from);
    end = to === '' ? size - 1 : Math.min(Number(to), size - 1);
  }
  if (start > end || start >= size) return 'unsatisfiable';
  return { start, end };
}

async function* rangePieces(disk: DiskReader, start: number, end: number): AsyncGenerator<Buffer> {
  for (let position = start; position <= end; position += RANGE_PIECE)
    yield await disk.read(position, Math.min(RANGE_PIECE, end - position + 1));
}

/**
 * Disks of a restore point, downloadable as raw (resumable with HTTP ranges) or as a dynamic VHD,
 * streamed from the repository with back-pressure: never loaded whole.
 */
@ApiTags('restore-points')
@ApiBearerAuth()
@Controller('api/v1/restore-points')
export class RestorePointDisksController {
  constructor(
    private readonly dataSource: DataSource,
    private readonly repositories: RepositoryOpener,
  ) {}

  @Get(':id/disks')
  async list(@CurrentPrincipal() principal: Principal, @Param('id') id: string) {
    return this.withRestorePoint(principal, id, async (opened, repositoryId) => {
      const point = await opened.repository.openRestorePoint(repositoryId);
      return {
        items: point.manifest.disks.map((disk) => ({
          key: disk.key,
          name: disk.name,
          virtualSize: disk.virtualSize,
          logicalBytes: disk.logicalBytes,
          download: {
            raw: `/api/v1/restore-points/${id}/disks/${disk.key}?format=raw`,
            vhd: `/api/v1/restore-points/${id}/disks/${disk.key}?format=vhd`,
          },
        })),
      };
    });
  }

  @Get(':id/disks/:key')
  @ApiQuery({ name: 'format', required: false, enum: ['raw', 'vhd'] })
  async download(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Param('key') key: string,
    @Query('format') format: string | undefined,
    @Req() request: Request,
    @Res() response: Response,
  ): Promise<void> {
    const chosen = format ?? 'raw';
    if (chosen !== 'raw' && chosen !== 'vhd')
      throw badRequest([{ field: 'format', message: 'must be raw or vhd' }]);
    const { row, opened, repositoryId } = await this.open(principal, id);
    let handedOver = false;
    try {
      const point = await opened.repository.openRestorePoint(repositoryId);
      const disk = point.disks.find((d) => d.key === key);
      if (!disk) throw notFound('Disk', `${key} of restore point ${id}`);
      const filename = `${row.vmName.replace(/[^\w.-]+/g, '_')}-${disk.key}-${row.takenAt.toISOString().replace(/[:.]/g, '-')}.${chosen === 'raw' ? 'img' : 'vhd'}`;
      response.setHeader('content-disposition', `attachment; filename="${filename}"`);
      response.setHeader('content-type', 'application/octet-stream');
      let body: Readable;
      if (chosen === 'vhd') {
        body = disk.createVhdStream({ type: 'dynamic' });
        response.status(200);
      } else {
        const size = disk.virtualSize;
        response.setHeader('accept-ranges', 'bytes');
        const range =
          request.headers.range === undefined ? undefined : parseRange(request.headers.range, size);
        if (range === 'unsatisfiable') {
          response.setHeader('content-range', `bytes */${size}`);
          throw new ProblemException(
            HttpStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
            'Range not satisfiable',
            `The disk has ${size} bytes`,
          );
        }
        if (range) {
          response.status(206);
          response.setHeader('content-range', `bytes ${range.start}-${range.end}/${size}`);
          response.setHeader('content-length', String(range.end - range.start + 1));
          body = Readable.from(rangePieces(disk, range.start, range.end));
        } else {
          response.status(200);
          response.setHeader('content-length', String(size));
          body = disk.createReadStream();
        }
      }
      handedOver = true;
      // A damaged chunk mid-stream aborts the response: the client sees a cut transfer, never wrong bytes.
      await pipeline(body, response).catch(() => response.destroy());
    } finally {
      await opened.close();
      if (!handedOver && response.headersSent) response.end();
    }
  }

  /** A full-backup archive's XVA (as exported, with the host's compression), unsealed and checked as it streams. */
  @Get(':id/archive')
  async archive(
    @CurrentPrincipal() principal: Principal,
    @Param('id') id: string,
    @Res() response: Response,
  ): Promise<void> {
    const row = await this.dataSource
      .getRepository(RestorePointEntity)
      .findOneBy({ id: validId(id), tenantId: principal.tenantId });
    if (!row) throw notFound('Restore point', id);
    if (!isArchiveManifestKey(row.manifestKey))
      throw new ProblemException(
        HttpStatus.CONFLICT,
        'Not a full-backup archive',
        `Restore point ${id} is not a full-backup archive; download its disks with GET /api/v1/restore-points/${id}/disks`,
      );
    const remote = await this.dataSource
      .getRepository(RemoteEntity)
      .findOneByOrFail({ id: row.remoteId, tenantId: principal.tenantId });
    const opened = await this.repositories.open(remote);
    let handedOver = false;
    try {
      const archives = ArchiveStore.forRepository(opened.repository);
      const manifest = await archives.readManifest(row.manifestKey).catch((error: unknown) => {
        if (!(error instanceof ArchiveError)) throw error;
        throw new ProblemException(
          error.code === 'ARCHIVE_NOT_FOUND' ? HttpStatus.NOT_FOUND : HttpStatus.UNPROCESSABLE_ENTITY,
          'Archive unreadable',
          `Restore point ${id}: ${error.message}`,
        );
      });
      const filename = `${row.vmName.replace(/[^\w.-]+/g, '_')}-${row.takenAt.toISOString().replace(/[:.]/g, '-')}.xva`;
      response.status(200);
      response.setHeader('content-disposition', `attachment; filename="${filename}"`);
      response.setHeader('content-type', 'application/octet-stream');
      response.setHeader('content-length', String(manifest.totalSize));
      response.setHeader('x-haven-xva-compression', manifest.compression);
      handedOver = true;
      // A damaged segment mid-stream aborts the response: the client sees a cut transfer, never wrong bytes.
      await pipeline(archives.createReadStream(manifest), response).catch(() => response.destroy());
    } finally {
      await opened.close();
      if (!handedOver && response.headersSent) response.end();
    }
  }

  private async open(
    principal: Principal,
    id: string,
  ): Promise<{ row: RestorePointEntity; opened: OpenedRepository; repositoryId: string }> {
    const row = await this.dataSource
      .getRepository(RestorePointEntity)
      .findOneBy({ id: validId(id), tenantId: principal.tenantId });
    if (!row) throw notFound('Restore point', id);
    const remote = await this.dataSource
      .getRepository(RemoteEntity)
      .findOneByOrFail({ id: row.remoteId, tenantId: principal.tenantId });
    const repositoryId = restorePointIdOfKey(row.manifestKey);
    if (isArchiveManifestKey(row.manifestKey))
      throw new ProblemException(
        HttpStatus.CONFLICT,
        'Full-backup archive',
        `Restore point ${id} is a full-backup archive (one XVA, no separate disks); download it with GET /api/v1/restore-points/${id}/archive`,
      );
    if (repositoryId === undefined)
      throw new ProblemException(
        HttpStatus.CONFLICT,
        'Unknown restore point layout',
        `Restore point ${id} has an unexpected manifest key`,
      );
    return { row, opened: await this.repositories.open(remote), repositoryId };
  }

  private async withRestorePoint<T>(
    principal: Principal,
    id: string,
    use: (opened: OpenedRepository, repositoryId: string) => Promise<T>,
  ): Promise<T> {
    const { opened, repositoryId } = await this.open(principal, id);
    try {
      return await use(opened, repositoryId);
    } finally {
      await opened.close();
    }
  }
}
