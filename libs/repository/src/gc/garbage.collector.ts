import { hostname } from 'node:os';
import { isRemoteError, type RemoteLease } from '@haven/remote-sdk';
import type { Repository } from '../repository';
import {
  GC_LEASE,
  RESTORE_POINTS_PREFIX,
  TRASH_BATCHES_PREFIX,
  TRASH_PREFIX,
  chunkIdOfKey,
  chunkKey,
  manifestKey,
  newBatchId,
  restorePointIdOfKey,
  trashBatchKey,
  trashChunkKey,
} from '../format/repository.layout';
import { RepositoryError } from '../repository.errors';
import { forEachIndexConcurrent, mapConcurrent } from '../concurrency';
import { SortedChunkIds } from '../sorted-chunk-ids';
import { remoteNow } from './remote.clock';
import { readLiveSessions, type LiveSession } from './session.registry';

export interface GarbageCollectionOptions {
  /** Chunks younger than this (by the remote's clock) are never moved. Default 24 h. */
  safetyWindowMs?: number;
  /** How long a trash batch is kept before it may be purged. Default: the safety window. */
  trashRetentionMs?: number;
  /** Shown to a second GC refused by the lease. */
  owner?: string;
  leaseTtlMs?: number;
  concurrency?: number;
  signal?: AbortSignal;
}

export interface GarbageCollectionReport {
  restorePoints: number;
  referencedChunks: number;
  /** Unreferenced chunks moved to trash in this run. */
  trashedChunks: number;
  /** Chunks brought back from trash because a restore point references them again. */
  restoredChunks: number;
  /** Chunks deleted for good (space freed). */
  purgedChunks: number;
  purgedBytes: number;
  /** Trash batches kept because a writer that was running when they were made still runs. */
  batchesKeptForWriters: number;
  orphanRestorePointsRemoved: string[];
  liveWriters: string[];
}

interface TrashBatchRecord {
  batchId: string;
  state: 'moving' | 'complete';
  createdAt: string;
  completedAt?: string;
  /** Writer sessions live when the last chunk was moved: they may rely on any chunk of the batch. */
  liveSessions: string[];
}

/**
 * Mark and sweep, safe with backups running (docs/repository-format.md, "Garbage collection"):
 * unreferenced old chunks are first moved to a trash batch (still readable), and a batch is
 * purged only in a run where no writer that was live when it was filled is still live, after
 * re-marking with every restore point committed meanwhile.
 */
export async function collectGarbage(
  repository: Repository,
  options: GarbageCollectionOptions = {},
): Promise<GarbageCollectionReport> {
  const store = repository.store;
  const signal = options.signal;
  const opts = signal !== undefined ? { signal } : {};
  const window = options.safetyWindowMs ?? 24 * 60 * 60 * 1000;
  const retention = options.trashRetentionMs ?? window;
  const concurrency = options.concurrency ?? 8;
  const leaseTtl = options.leaseTtlMs ?? 10 * 60 * 1000;
  const lease: RemoteLease = await store.acquireLease(GC_LEASE, {
    owner: options.owner ?? `gc@${hostname()}:${process.pid}`,
    ttlMs: leaseTtl,
    ...opts,
  });
  let leaseError: unknown;
  const renewal = setInterval(
    () => {
      lease.renew().catch((error: unknown) => (leaseError ??= error));
    },
    Math.max(100, Math.floor(leaseTtl / 3)),
  );
  renewal.unref();
  // Before anything destructive: a GC that lost its lease must stop (another may run now).
  const checkpoint = (): void => {
    signal?.throwIfAborted();
    if (leaseError !== undefined) {
      throw new RepositoryError(
        'ABORTED',
        `garbage collection on remote ${store.name} lost its lease; nothing more was changed, run it again`,
        {
          remote: store.name,
        },
        { cause: leaseError },
      );
    }
  };
  const report: GarbageCollectionReport = {
    restorePoints: 0,
    referencedChunks: 0,
    trashedChunks: 0,
    restoredChunks: 0,
    purgedChunks: 0,
    purgedBytes: 0,
    batchesKeptForWriters: 0,
    orphanRestorePointsRemoved: [],
    liveWriters: [],
  };
  try {
    const now = await remoteNow(store, signal);
    const cutoff = now.getTime() - window;

    // Mark: every chunk of every committed restore point, once each: 32 bytes a chunk, whatever
    // the number of restore points that reference it (a worker's memory bounds a GC).
    const referenced = new SortedChunkIds();
    const marked = new Set<string>();
    const markNew = async (): Promise<Map<string, Date>> => {
      const folders = new Map<string, Date>();
      const manifests: string[] = [];
      for await (const object of store.listAll(RESTORE_POINTS_PREFIX, opts)) {
        const id = restorePointIdOfKey(object.key);
        if (id === undefined) continue;
        if (object.key === manifestKey(id)) manifests.push(id);
        const newest = folders.get(id);
        if (newest === undefined || newest < object.modifiedAt) folders.set(id, object.modifiedAt);
      }
      const fresh = manifests.filter((id) => !marked.has(id));
      await mapConcurrent(fresh, concurrency, async (id) => {
        let manifest;
        try {
          manifest = await repository.readManifest(id, signal);
        } catch (error) {
          // Expired meanwhile: nothing to mark.
          if (error instanceof RepositoryError && error.code === 'RESTORE_POINT_NOT_FOUND') return;
          throw refuse(error, id);
        }
        for (const disk of manifest.disks) {
          let index;
          try {
            index = await repository.readDiskIndex(manifest, disk.key, signal);
          } catch (error) {
            throw refuse(error, id);
          }
          index.forEachChunkId((records, offset) => referenced.addFrom(records, offset));
        }
        marked.add(id);
      });
      for (const id of manifests) folders.delete(id);
      return folders;
    };
    const refuse = (error: unknown, id: string): unknown =>
      error instanceof RepositoryError
        ? new RepositoryError(
            error.code,
            `garbage collection refused to sweep: ${error.message}. The chunks this restore point references are unknown; ` +
              `run verify, then delete restore point ${id} if it cannot be repaired`,
            error.context,
            { cause: error },
          )
        : error;
    await markNew();

    // Sweep: unreferenced chunks older than the window go to a new trash batch. The listing is
    // read as it comes; only the garbage's ids are kept.
    const garbage = new SortedChunkIds();
    for await (const chunk of repository.chunks.objects(signal))
      if (chunk.modifiedAt.getTime() < cutoff && !referenced.has(chunk.id)) garbage.add(chunk.id);
    if (garbage.size > 0) {
      checkpoint();
      const batchId = newBatchId(now);
      const record: TrashBatchRecord = {
        batchId,
        state: 'moving',
        createdAt: now.toISOString(),
        liveSessions: [],
      };
      await store.put(trashBatchKey(batchId), Buffer.from(JSON.stringify(record)), opts);
      await forEachIndexConcurrent(garbage.size, concurrency, async (position) => {
        const id = garbage.idAt(position).toString('hex');
        checkpoint();
        try {
          await store.rename(chunkKey(id), trashChunkKey(batchId, id), opts);
          report.trashedChunks++;
        } catch (error) {
          if (!isRemoteError(error, 'NOT_FOUND')) throw error;
        }
      });
      const after = await readLiveSessions(store, await remoteNow(store, signal), signal);
      record.state = 'complete';
      record.completedAt = (await remoteNow(store, signal)).toISOString();
      record.liveSessions = [...after.keys()];
      await store.put(trashBatchKey(batchId), Buffer.from(JSON.stringify(record)), opts);
    }

    // Sessions read now, then a second mark: a writer that ended before this read has its
    // manifest listed by the mark that follows.
    const trashNow = await remoteNow(store, signal);
    const live = await readLiveSessions(store, trashNow, signal);
    report.liveWriters = [...live.keys()];
    const orphanFolders = await markNew();
    report.restorePoints = marked.size;
    report.referencedChunks = referenced.size;

    await processTrash(repository, {
      now: trashNow,
      retention,
      live,
      referenced,
      checkpoint,
      concurrency,
      report,
      signal,
    });
    await removeOrphans(repository, { cutoff, live, orphanFolders, checkpoint, report, signal });
    return report;
  } finally {
    clearInterval(renewal);
    await lease.release().catch(() => undefined);
  }
}

async function processTrash(
  repository: Repository,
  context: {
    now: Date;
    retention: number;
    live: Map<string, LiveSession>;
    referenced: SortedChunkIds;
    checkpoint: () => void;
    concurrency: number;
    report: GarbageCollectionReport;
    signal: AbortSignal | undefined;
  },
): Promise<void> {
  const store = repository.store;
  const opts = context.signal !== undefined ? { signal: context.signal } : {};
  const records: TrashBatchRecord[] = [];
  for await (const object of store.listAll(TRASH_BATCHES_PREFIX, opts)) {
    try {
      records.push(
        JSON.parse((await store.getBuffer(object.key, opts)).toString('utf8')) as TrashBatchRecord,
      );
    } catch (error) {
      if (!isRemoteError(error, 'NOT_FOUND')) throw error;
    }
  }
  for (const record of records) {
    context.checkpoint();
    let purge: boolean;
    if (record.state !== 'complete' || record.completedAt === undefined) {
      // Left by a GC that died while moving: every writer that could have listed its chunks is
      // live now or has committed (and was marked). Restore what is referenced, purge later.
      const completed: TrashBatchRecord = {
        ...record,
        state: 'complete',
        completedAt: context.now.toISOString(),
        liveSessions: [...context.live.keys()],
      };
      await store.put(trashBatchKey(record.batchId), Buffer.from(JSON.stringify(completed)), opts);
      context.report.batchesKeptForWriters++;
      purge = false;
    } else {
      const blockingWriters = record.liveSessions.filter((session) => context.live.has(session));
      const old = context.now.getTime() - new Date(record.completedAt).getTime() >= context.retention;
      purge = blockingWriters.length === 0 && old;
      if (blockingWriters.length > 0) context.report.batchesKeptForWriters++;
    }
    const prefix = `${TRASH_PREFIX}${record.batchId}/`;
    const objects = [];
    for await (const object of store.listAll(prefix, opts)) objects.push(object);
    await mapConcurrent(objects, context.concurrency, async (object) => {
      const id = chunkIdOfKey(object.key);
      if (id === undefined) return;
      context.checkpoint();
      if (context.referenced.has(Buffer.from(id, 'hex'))) {
        // A restore point committed since the sweep uses it: bring it home.
        if (await store.exists(chunkKey(id), opts)) await store.delete(object.key, opts);
        else await store.rename(object.key, chunkKey(id), opts);
        context.report.restoredChunks++;
      } else if (purge) {
        await store.delete(object.key, opts);
        context.report.purgedChunks++;
        context.report.purgedBytes += object.size;
      }
    });
    if (purge) await store.delete(trashBatchKey(record.batchId), opts);
  }
}

async function removeOrphans(
  repository: Repository,
  context: {
    cutoff: number;
    live: Map<string, LiveSession>;
    orphanFolders: Map<string, Date>;
    checkpoint: () => void;
    report: GarbageCollectionReport;
    signal: AbortSignal | undefined;
  },
): Promise<void> {
  const store = repository.store;
  const opts = context.signal !== undefined ? { signal: context.signal } : {};
  const writing = new Set([...context.live.values()].map((session) => session.restorePoint));
  for (const [id, newest] of context.orphanFolders) {
    // Indexes without a manifest: a writer that died or aborted. Never one still running.
    if (writing.has(id) || newest.getTime() >= context.cutoff) continue;
    context.checkpoint();
    if (await store.exists(manifestKey(id), opts)) continue;
    for await (const object of store.listAll(`${RESTORE_POINTS_PREFIX}${id}/`, opts))
      await store.delete(object.key, opts);
    context.report.orphanRestorePointsRemoved.push(id);
  }
}
