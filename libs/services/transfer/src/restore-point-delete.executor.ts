import { ArchiveStore, parseArchiveManifestKey } from '@haven/job-backup-full/archive';
import type { RestorePointReference, TaskExecutionContext } from '@haven/plugin-sdk';
import { manifestKey, type Repository, restorePointIdOfKey } from '@haven/repository';
import { MaintenanceInputError, withRepository } from './repository-maintenance.executor';

interface RestorePointDeleteInput {
  restorePointId: string;
  remoteId: string;
  manifestKey: string;
}

function readInput(input: Record<string, unknown>): RestorePointDeleteInput {
  const text = (key: keyof RestorePointDeleteInput): string => {
    const value = input[key];
    if (typeof value !== 'string' || value === '')
      throw new MaintenanceInputError(`the restore point deletion task has no input.${key}`);
    return value;
  };
  return {
    restorePointId: text('restorePointId'),
    remoteId: text('remoteId'),
    manifestKey: text('manifestKey'),
  };
}

/**
 * Deletes what the manifest key names, manifest first (the restore point is gone at once, and a
 * deletion cut short leaves only unreferenced objects): a full-backup archive with its segments, or
 * an incremental restore point with its disk indexes (its chunks are left to the garbage collector).
 */
async function deleteByManifestKey(repository: Repository, key: string, signal: AbortSignal): Promise<void> {
  const archive = parseArchiveManifestKey(key);
  if (archive !== undefined) {
    await ArchiveStore.forRepository(repository).remove(archive, signal);
    return;
  }
  const id = restorePointIdOfKey(key);
  if (id === undefined || manifestKey(id) !== key)
    throw new MaintenanceInputError(
      `"${key}" is neither a restore point's nor a full-backup archive's manifest key; nothing was deleted`,
    );
  await repository.deleteRestorePoint(id, signal);
}

/**
 * `restore-point.delete`: deletes one restore point from its remote. Its result names it under
 * `expiredRestorePoints`, as retention does, so the catalog drops its row and collects the remote's
 * garbage. A restore point already gone (a redelivered task) counts as deleted: the row still goes.
 */
export async function executeRestorePointDelete(
  task: { input: Record<string, unknown> },
  context: TaskExecutionContext,
): Promise<Record<string, unknown>> {
  const input = readInput(task.input);
  return withRepository(context, input.remoteId, async (repository, remoteName) => {
    context.reportProgress({ step: 'deleting' });
    const present = await repository.store.exists(input.manifestKey, { signal: context.signal });
    await deleteByManifestKey(repository, input.manifestKey, context.signal);
    context.log(
      'info',
      present
        ? `restore point ${input.restorePointId} deleted from remote ${remoteName}`
        : `restore point ${input.restorePointId} was already gone from remote ${remoteName}; its remaining objects, if any, are deleted`,
      { manifestKey: input.manifestKey },
    );
    const deleted: RestorePointReference = { remoteId: input.remoteId, manifestKey: input.manifestKey };
    return { remoteId: input.remoteId, alreadyGone: !present, expiredRestorePoints: [deleted] };
  });
}
