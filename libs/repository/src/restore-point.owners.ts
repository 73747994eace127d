import type { RestorePointManifest } from './format/restore-point.manifest';

/** Whose a restore point is: what listRestorePoints filters on. */
export interface RestorePointOwner {
  vmUuid: string;
  tenant: string | undefined;
}

/**
 * Restore points' owners, remembered by the process per repository (manifests never change once
 * committed, and a restore point id is never reused). A repository that many VMs share holds
 * thousands of restore points; a VM task looks its own up twice (its base, then retention), which
 * without this read every manifest in the repository each time: one GET each on an object store.
 * With it, a process reads each manifest once for its owner, then only the VM's own.
 *
 * About 200 bytes an entry; past `maxEntries` in all, the repository remembered longest ago is
 * forgotten whole (simple, and a worker serves few repositories).
 */
export class RestorePointOwners {
  private readonly byRepository = new Map<string, Map<string, RestorePointOwner>>();
  private entries = 0;

  constructor(private readonly maxEntries = 100_000) {}

  /** The owners known for `repositoryId`, after forgetting ids no longer listed there. */
  known(repositoryId: string, listed: readonly string[]): ReadonlyMap<string, RestorePointOwner> {
    const owners = this.byRepository.get(repositoryId);
    if (owners === undefined) return new Map();
    const present = new Set(listed);
    for (const id of owners.keys()) {
      if (present.has(id)) continue;
      owners.delete(id);
      this.entries--;
    }
    // Most recently used last: the first repository in the map is forgotten first.
    this.byRepository.delete(repositoryId);
    this.byRepository.set(repositoryId, owners);
    return owners;
  }

  remember(repositoryId: string, manifest: RestorePointManifest): void {
    let owners = this.byRepository.get(repositoryId);
    if (owners === undefined)
      this.byRepository.set(repositoryId, (owners = new Map<string, RestorePointOwner>()));
    if (owners.has(manifest.id)) return;
    owners.set(manifest.id, { vmUuid: manifest.vm.uuid, tenant: manifest.tenant });
    this.entries++;
    while (this.entries > this.maxEntries) {
      const [oldest, forgotten] = this.byRepository.entries().next().value as [
        string,
        Map<string, RestorePointOwner>,
      ];
      this.byRepository.delete(oldest);
      this.entries -= forgotten.size;
    }
  }
}

/** The owners every Repository of this process shares. */
export const processRestorePointOwners = new RestorePointOwners();
