import type { Repository } from './repository';
import { mapConcurrent } from './concurrency';
import { SortedChunkIds } from './sorted-chunk-ids';

export interface UsageFigures {
  restorePoints: number;
  /** Sum over restore points of the bytes their disks hold (what a full copy of each would store). */
  logicalBytes: number;
  /** Bytes of the distinct chunk objects these restore points reference (counted once). */
  storedBytes: number;
  /** logicalBytes / storedBytes (compression and deduplication together); 0 when nothing is stored. */
  dedupRatio: number;
}

export interface RepositoryStatistics {
  repository: UsageFigures & {
    /** All chunk objects, referenced or not (garbage awaiting GC included). */
    chunkObjects: number;
    chunkBytes: number;
  };
  vms: (UsageFigures & { vmUuid: string; vmName: string })[];
  tenants: (UsageFigures & { tenant: string })[];
}

interface Scope {
  restorePoints: number;
  logicalBytes: number;
  /** The distinct chunks the scope's restore points reference: 32 bytes each. */
  chunks: SortedChunkIds;
}

/**
 * Reads every manifest and index once; per-scope stored bytes count each chunk once per scope.
 * Memory: 48 bytes per chunk of the repository (its listing) and 32 per chunk of each scope.
 */
export async function repositoryStatistics(
  repository: Repository,
  signal?: AbortSignal,
): Promise<RepositoryStatistics> {
  const stored = await repository.chunks.listing(signal);
  const scopes = new Map<string, Scope>();
  const names = new Map<string, string>();
  const scope = (name: string): Scope => {
    let entry = scopes.get(name);
    if (entry === undefined)
      scopes.set(name, (entry = { restorePoints: 0, logicalBytes: 0, chunks: new SortedChunkIds() }));
    return entry;
  };
  const ids = await repository.listRestorePointIds(signal);
  await mapConcurrent(ids, 4, async (id) => {
    const manifest = await repository.readManifest(id, signal);
    const targets = [
      scope('repository'),
      scope(`vm:${manifest.vm.uuid}`),
      scope(`tenant:${manifest.tenant ?? ''}`),
    ];
    names.set(manifest.vm.uuid, manifest.vm.name);
    for (const target of targets) {
      target.restorePoints++;
      target.logicalBytes += manifest.sizes.logicalBytes;
    }
    for (const disk of manifest.disks) {
      const index = await repository.readDiskIndex(manifest, disk.key, signal);
      index.forEachChunkId((records, offset) => {
        for (const target of targets) target.chunks.addFrom(records, offset);
      });
    }
  });
  const figures = (entry: Scope | undefined): UsageFigures => {
    let storedBytes = 0;
    for (const id of entry?.chunks ?? []) storedBytes += stored.sizeOf(id) ?? 0;
    const logicalBytes = entry?.logicalBytes ?? 0;
    return {
      restorePoints: entry?.restorePoints ?? 0,
      logicalBytes,
      storedBytes,
      dedupRatio: storedBytes === 0 ? 0 : logicalBytes / storedBytes,
    };
  };
  return {
    repository: {
      ...figures(scopes.get('repository')),
      chunkObjects: stored.size,
      chunkBytes: stored.totalBytes,
    },
    vms: [...scopes.keys()]
      .filter((name) => name.startsWith('vm:'))
      .map((name) => ({
        vmUuid: name.slice(3),
        vmName: names.get(name.slice(3)) ?? '',
        ...figures(scopes.get(name)),
      }))
      .sort((a, b) => a.vmName.localeCompare(b.vmName)),
    tenants: [...scopes.keys()]
      .filter((name) => name.startsWith('tenant:'))
      .map((name) => ({ tenant: name.slice(7), ...figures(scopes.get(name)) }))
      .sort((a, b) => a.tenant.localeCompare(b.tenant)),
  };
}
