import type { DamagedRestorePointReport } from '@haven/contracts';
import { ArchiveStore, verifyArchives } from '@haven/job-backup-full/archive';
import type { TaskExecutionContext } from '@haven/plugin-sdk';
import {
  collectGarbage,
  manifestKey,
  recordDamage,
  type Repository,
  verifyRepository,
} from '@haven/repository';
import { openCatalogRepository } from './catalog.repository';

/** A maintenance task whose input cannot be used: retrying it cannot help. */
export class MaintenanceInputError extends Error {
  readonly permanent = true;
  constructor(message: string) {
    super(message);
    this.name = 'MaintenanceInputError';
  }
}

interface MaintenanceInput {
  remoteId: string;
  safetyWindowMs?: number;
  sample?: number;
}

function readInput(input: Record<string, unknown>): MaintenanceInput {
  const remoteId = input['remoteId'];
  if (typeof remoteId !== 'string' || remoteId === '')
    throw new MaintenanceInputError('the maintenance task names no remote (input.remoteId)');
  const number = (key: string): number | undefined => {
    const value = input[key];
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
      throw new MaintenanceInputError(`input.${key} must be a number >= 0 (got ${JSON.stringify(value)})`);
    return value;
  };
  const safetyWindowMs = number('safetyWindowMs');
  const sample = number('sample');
  return {
    remoteId,
    ...(safetyWindowMs === undefined ? {} : { safetyWindowMs }),
    ...(sample === undefined ? {} : { sample }),
  };
}

/** Opens the remote's repository (its passphrase unsealed for this task only) for `work`. */
export async function withRepository<T>(
  context: TaskExecutionContext,
  remoteId: string,
  work: (repository: Repository, remoteName: string) => Promise<T>,
): Promise<T> {
  const remote = await context.resources.remote(remoteId);
  try {
    const repository = await openCatalogRepository(remote);
    return await work(repository, remote.name);
  } finally {
    await remote.store.close().catch(() => undefined);
  }
}

/**
 * `repository.gc`: the repository's mark-and-sweep collector on one remote (it holds the remote's
 * GC lease, so two never run at once, and spares chunks younger than its safety window).
 */
export async function executeRepositoryGc(
  task: { input: Record<string, unknown> },
  context: TaskExecutionContext,
): Promise<Record<string, unknown>> {
  const input = readInput(task.input);
  return withRepository(context, input.remoteId, async (repository, remoteName) => {
    context.reportProgress({ step: 'collecting garbage' });
    context.log('info', `garbage collection on remote ${remoteName} started`, {
      remoteId: input.remoteId,
      safetyWindowMs: input.safetyWindowMs ?? null,
    });
    const report = await collectGarbage(repository, {
      signal: context.signal,
      ...(input.safetyWindowMs === undefined ? {} : { safetyWindowMs: input.safetyWindowMs }),
    });
    context.log(
      'info',
      `garbage collection on remote ${remoteName}: ${report.purgedChunks} chunk(s) freed (${report.purgedBytes} bytes), ${report.trashedChunks} moved to trash`,
      { ...report },
    );
    return {
      remoteId: input.remoteId,
      freedChunks: report.purgedChunks,
      freedBytes: report.purgedBytes,
      ...report,
    };
  });
}

/**
 * `repository.verify`: re-reads and re-hashes the remote's chunks and names every restore point a
 * missing or damaged chunk breaks; the catalog marks those restore points damaged, and the
 * repository's damage record tells the next backup not to build on them (nor dedupe against the
 * bad chunks).
 */
export async function executeRepositoryVerify(
  task: { input: Record<string, unknown> },
  context: TaskExecutionContext,
): Promise<Record<string, unknown>> {
  const input = readInput(task.input);
  return withRepository(context, input.remoteId, async (repository, remoteName) => {
    context.reportProgress({ step: 'verifying' });
    const report = await verifyRepository(repository, {
      signal: context.signal,
      ...(input.sample === undefined ? {} : { sample: input.sample }),
      onProgress: ({ checkedChunks, totalChunks }) =>
        context.reportProgress({ step: 'verifying', checkedChunks, totalChunks }),
    });
    // The full-backup archives on the same remote: their manifests, segments present, and the
    // sampled segments re-read to their SHA-256.
    context.reportProgress({ step: 'verifying archives' });
    const archives = await verifyArchives(ArchiveStore.forRepository(repository), {
      signal: context.signal,
      ...(input.sample === undefined ? {} : { sample: input.sample }),
      onProgress: ({ checkedSegments, totalSegments }) =>
        context.reportProgress({ step: 'verifying archives', checkedSegments, totalSegments }),
    });
    const bad = [...report.damagedChunks, ...report.missingChunks];
    const damagedRestorePoints: DamagedRestorePointReport[] = report.brokenRestorePoints.map((point) => ({
      manifestKey: manifestKey(point.id),
      label: point.label,
      ...(point.vmUuid === undefined ? {} : { vmUuid: point.vmUuid }),
      reasons: point.reasons,
      chunks: bad
        .filter((chunk) => chunk.restorePoints.includes(point.label))
        .map((chunk) => ({ chunkId: chunk.chunkId, reason: chunk.reason })),
    }));
    for (const archive of archives.brokenArchives)
      damagedRestorePoints.push({
        manifestKey: archive.manifestKey,
        label: archive.label,
        ...(archive.vmUuid === undefined ? {} : { vmUuid: archive.vmUuid }),
        reasons: archive.reasons,
        chunks: [],
      });
    await recordDamage(
      repository,
      {
        restorePoints: report.brokenRestorePoints.map((point) => point.id),
        chunks: bad.map((chunk) => chunk.chunkId),
        complete: input.sample === undefined,
      },
      context.signal,
    );
    for (const chunk of bad)
      context.log('error', `chunk ${chunk.chunkId} on remote ${remoteName} is ${chunk.reason}`, {
        chunkId: chunk.chunkId,
        key: chunk.key,
        restorePoints: chunk.restorePoints,
      });
    for (const point of damagedRestorePoints)
      context.log('error', `restore point ${point.label} is damaged: ${point.reasons.join('; ')}`, {
        manifestKey: point.manifestKey,
      });
    const ok = report.ok && archives.ok;
    context.log(
      ok ? 'info' : 'warn',
      `verify of remote ${remoteName}: ${report.checkedChunks} of ${report.chunks} chunk(s) re-hashed, ${bad.length} bad; ${archives.checkedSegments} of ${archives.segments} archive segment(s) of ${archives.archives} archive(s) re-read; ${damagedRestorePoints.length} restore point(s) damaged`,
    );
    return {
      remoteId: input.remoteId,
      ok,
      // Only a verify of every chunk may declare the others sound.
      complete: input.sample === undefined,
      restorePoints: report.restorePoints,
      chunks: report.chunks,
      checkedChunks: report.checkedChunks,
      checkedBytes: report.checkedBytes,
      chunksInTrash: report.chunksInTrash,
      damagedChunks: report.damagedChunks,
      missingChunks: report.missingChunks,
      archives: archives.archives,
      archiveSegments: archives.segments,
      checkedArchiveSegments: archives.checkedSegments,
      checkedArchiveBytes: archives.checkedBytes,
      damagedRestorePoints,
    };
  });
}
