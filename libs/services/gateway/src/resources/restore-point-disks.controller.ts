import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { Controller, Get, HttpStatus, Param, Query, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { DataSource } from 'typeorm';
import { RemoteEntity, RestorePointEntity } from '@haven/db';
import {
  ArchiveDiskReader,
  ArchiveError,
  ArchiveStore,
  isArchiveManifestKey,
  type ArchiveManifest,
} from '@haven/job-backup-full/archive';
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

/**
 * The byte range a raw download asks for within `size`: undefined for the whole disk, 416 (with
 * `Content-Range: bytes *\/size`) for one past its end.
 */
function requestedRange(
  request: Request,
  response: Response,
  size: number,
): { start: number; end: number } | undefined {
  response.setHeader('accept-ranges', 'bytes');
  const range = request.headers.range === undefined ? undefined : parseRange(request.headers.range, size);
  if (range === 'unsatisfiable') {
    response.setHeader('content-range', `bytes */${size}`);
    throw new ProblemException(
      HttpStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
      'Range not satisfiable',
      `The disk has ${size} bytes`,
    );
  }
  if (range === undefined) {
    response.status(200);
    response.setHeader('content-length', String(size));
  } else {
    response.status(206);
    response.setHeader('content-range', `bytes ${range.start}-${range.end}/${size}`);
    response.setHeader('content-length', String(range.end - range.start + 1));
  }
  return range;
}

function downloadName(row: RestorePointEntity, diskKey: string, format: 'raw' | 'vhd'): string {
  return `${row.vmName.replace(/[^\w.-]+/g, '_')}-${diskKey.replace(/[^\w.-]+/g, '_')}-${row.takenAt.toISOString().replace(/[:.]/g, '-')}.${format === 'raw' ? 'img' : 'vhd'}`;
}

/** A damaged or missing archive as the problem a client can act on (404 gone, 422 damaged). */
function archiveProblem(id: string, error: unknown): unknown {
  if (!(error instanceof ArchiveError)) return error;
  return new ProblemException(
    error.code === 'ARCHIVE_NOT_FOUND' ? HttpStatus.NOT_FOUND : HttpStatus.UNPROCESSABLE_ENTITY,
    'Archive unreadable',
    `Restore point ${id}: ${error.message}`,
  );
}

interface FoundPoint {
  row: RestorePointEntity;
  remote: RemoteEntity;
}

async function* rangePieces(disk: DiskReader, start: number, end: number): AsyncGenerator<Buffer> {
  for (let position = start; position <= end; position += RANGE_PIECE)
    yield await disk.read(position, Math.min(RANGE_PIECE, end - position + 1));
}

/**
 * Disks of a restore point, downloadable as raw (resumable with HTTP ranges) or as a dynamic VHD,
 * streamed from the repository with back-pressure: never loaded whole. A full-backup archive's disks
 * are read out of its XVA by ArchiveDiskReader (sequential: see its notes on ranges and VHDs).
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
    const point = await this.findPoint(principal, id);
    if (isArchiveManifestKey(point.row.manifestKey)) return this.listArchiveDisks(id, point);
    return this.withRestorePoint(id, point, async (opened, repositoryId) => {
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
    const found = await this.findPoint(principal, id);
    if (isArchiveManifestKey(found.row.manifestKey))
      return this.downloadArchiveDisk(id, key, chosen, found, request, response);
    const { row, opened, repositoryId } = await this.open(id, found);
    let handedOver = false;
    try {
      const point = await opened.repository.openRestorePoint(repositoryId);
      const disk = point.disks.find((d) => d.key === key);
      if (!disk) throw notFound('Disk', `${key} of restore point ${id}`);
      response.setHeader(
        'content-disposition',
        `attachment; filename="${downloadName(row, disk.key, chosen)}"`,
      );
      response.setHeader('content-type', 'application/octet-stream');
      let body: Readable;
      if (chosen === 'vhd') {
        body = disk.createVhdStream({ type: 'dynamic' });
        response.status(200);
      } else {
        const range = requestedRange(request, response, disk.virtualSize);
        body =
          range === undefined
            ? disk.createReadStream()
            : Readable.from(rangePieces(disk, range.start, range.end));
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
    const point = await this.findPoint(principal, id);
    const { row } = point;
    if (!isArchiveManifestKey(row.manifestKey))
      throw new ProblemException(
        HttpStatus.CONFLICT,
        'Not a full-backup archive',
        `Restore point ${id} is not a full-backup archive; download its disks with GET /api/v1/restore-points/${id}/disks`,
      );
    await this.withArchive(id, point, async (_reader, manifest, archives) => {
      const filename = `${row.vmName.replace(/[^\w.-]+/g, '_')}-${row.takenAt.toISOString().replace(/[:.]/g, '-')}.xva`;
      response.status(200);
      response.setHeader('content-disposition', `attachment; filename="${filename}"`);
      response.setHeader('content-type', 'application/octet-stream');
      response.setHeader('content-length', String(manifest.totalSize));
      response.setHeader('x-haven-xva-compression', manifest.compression);
      // A damaged segment mid-stream aborts the response: the client sees a cut transfer, never wrong bytes.
      await pipeline(archives.createReadStream(manifest), response).catch(() => response.destroy());
    });
  }

  /** The tenant's restore point and the remote holding it; 404 when there is none of that id. */
  private async findPoint(principal: Principal, id: string): Promise<FoundPoint> {
    const row = await this.dataSource
      .getRepository(RestorePointEntity)
      .findOneBy({ id: validId(id), tenantId: principal.tenantId });
    if (!row) throw notFound('Restore point', id);
    const remote = await this.dataSource
      .getRepository(RemoteEntity)
      .findOneByOrFail({ id: row.remoteId, tenantId: principal.tenantId });
    return { row, remote };
  }

  /** Opens the archive's repository and reads its manifest; `use` runs before the repository closes. */
  private async withArchive<T>(
    id: string,
    archive: FoundPoint,
    use: (reader: ArchiveDiskReader, manifest: ArchiveManifest, archives: ArchiveStore) => Promise<T>,
  ): Promise<T> {
    const opened = await this.repositories.open(archive.remote);
    try {
      const archives = ArchiveStore.forRepository(opened.repository);
      const manifest = await archives.readManifest(archive.row.manifestKey).catch((error: unknown) => {
        throw archiveProblem(id, error);
      });
      return await use(new ArchiveDiskReader(archives, manifest), manifest, archives);
    } finally {
      await opened.close();
    }
  }

  /** A full-backup archive's disks, as its XVA's ova.xml lists them (read from its first segment). */
  private listArchiveDisks(id: string, archive: FoundPoint) {
    return this.withArchive(id, archive, async (reader) => {
      const disks = await reader.disks().catch((error: unknown) => {
        throw archiveProblem(id, error);
      });
      return {
        items: disks.map((disk) => ({
          key: disk.key,
          name: disk.name ?? null,
          uuid: disk.uuid ?? null,
          folder: disk.folder,
          virtualSize: disk.virtualSize,
          download: {
            raw: `/api/v1/restore-points/${id}/disks/${encodeURIComponent(disk.key)}?format=raw`,
            vhd: `/api/v1/restore-points/${id}/disks/${encodeURIComponent(disk.key)}?format=vhd`,
          },
        })),
      };
    });
  }

  /**
   * A disk streamed out of a full-backup archive's XVA. Raw ranges read the archive from its start
   * and discard up to the range; a VHD takes a first pass over the archive to learn its blocks.
   */
  private async downloadArchiveDisk(
    id: string,
    key: string,
    format: 'raw' | 'vhd',
    archive: FoundPoint,
    request: Request,
    response: Response,
  ): Promise<void> {
    await this.withArchive(id, archive, async (reader) => {
      const disk = await reader.disk(key).catch((error: unknown) => {
        if (error instanceof ArchiveError && error.code === 'ARCHIVE_DISK_NOT_FOUND')
          throw notFound('Disk', `${key} of restore point ${id}`);
        throw archiveProblem(id, error);
      });
      // Ends the archive reads when the client goes away before the disk is out.
      const abort = new AbortController();
      response.on('close', () => abort.abort());
      let body: Readable;
      if (format === 'vhd') {
        const vhd = await reader.createVhdStream(disk, { signal: abort.signal }).catch((error: unknown) => {
          throw archiveProblem(id, error);
        });
        response.status(200);
        response.setHeader('content-length', String(vhd.length));
        body = vhd.stream;
      } else {
        const range = requestedRange(request, response, disk.virtualSize);
        body = reader.createRawStream(disk, {
          ...(range !== undefined ? { range } : {}),
          signal: abort.signal,
        });
      }
      response.setHeader(
        'content-disposition',
        `attachment; filename="${downloadName(archive.row, disk.key, format)}"`,
      );
      response.setHeader('content-type', 'application/octet-stream');
      // A damaged archive mid-stream aborts the response: the client sees a cut transfer, never a short disk.
      await pipeline(body, response).catch(() => response.destroy());
    });
  }

  private async open(
    id: string,
    { row, remote }: FoundPoint,
  ): Promise<{ row: RestorePointEntity; opened: OpenedRepository; repositoryId: string }> {
    const repositoryId = restorePointIdOfKey(row.manifestKey);
    if (repositoryId === undefined)
      throw new ProblemException(
        HttpStatus.CONFLICT,
        'Unknown restore point layout',
        `Restore point ${id} has an unexpected manifest key`,
      );
    return { row, opened: await this.repositories.open(remote), repositoryId };
  }

  private async withRestorePoint<T>(
    id: string,
    point: FoundPoint,
    use: (opened: OpenedRepository, repositoryId: string) => Promise<T>,
  ): Promise<T> {
    const { opened, repositoryId } = await this.open(id, point);
    try {
      return await use(opened, repositoryId);
    } finally {
      await opened.close();
    }
  }
}
