import { randomBytes } from 'node:crypto';
import type { OperationOptions, RemoteStore } from '@haven/remote-sdk';
import { scratchDir } from '@haven/testing';
import type { RestorePointManifest } from './format/restore-point.manifest';
import { initRepository, type Repository } from './repository';
import { RestorePointOwners } from './restore-point.owners';
import { localRemote } from './testing/disk-pattern.fixture';

function manifestOf(id: string, vmUuid: string, tenant?: string): RestorePointManifest {
  return {
    id,
    vm: { uuid: vmUuid, name: vmUuid },
    ...(tenant !== undefined ? { tenant } : {}),
  } as RestorePointManifest;
}

describe('RestorePointOwners', () => {
  it('remembers owners per repository and forgets ids no longer listed', () => {
    const owners = new RestorePointOwners();
    owners.remember('repo-a', manifestOf('p1', 'vm-1', 't'));
    owners.remember('repo-a', manifestOf('p2', 'vm-2'));
    owners.remember('repo-b', manifestOf('p1', 'vm-9'));
    expect([...owners.known('repo-a', ['p1', 'p2', 'p3']).entries()]).toEqual([
      ['p1', { vmUuid: 'vm-1', tenant: 't' }],
      ['p2', { vmUuid: 'vm-2', tenant: undefined }],
    ]);
    expect([...owners.known('repo-a', ['p2']).keys()]).toEqual(['p2']);
    expect(owners.known('repo-b', ['p1']).get('p1')?.vmUuid).toBe('vm-9');
    expect(owners.known('repo-c', ['p1']).size).toBe(0);
  });

  it('forgets the repository used longest ago once past its size', () => {
    const owners = new RestorePointOwners(3);
    owners.remember('old', manifestOf('p1', 'vm'));
    owners.remember('old', manifestOf('p2', 'vm'));
    owners.remember('new', manifestOf('p1', 'vm'));
    expect(owners.known('old', ['p1', 'p2']).size).toBe(2);
    // 'new' is now the one used longest ago.
    owners.remember('old', manifestOf('p3', 'vm'));
    expect(owners.known('new', ['p1']).size).toBe(0);
    expect(owners.known('old', ['p1', 'p2', 'p3']).size).toBe(3);
  });
});

describe('Repository.listRestorePoints with the owners remembered', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  beforeEach(async () => (dir = await scratchDir('haven-owners-')));
  afterEach(() => dir.cleanup());

  /** The repository's store, counting the manifests read. */
  function counting(store: RemoteStore): { store: RemoteStore; manifestsRead: () => number } {
    let reads = 0;
    const wrapper = Object.create(store) as RemoteStore;
    Object.assign(wrapper, {
      getBuffer: (key: string, options?: OperationOptions) => {
        if (key.endsWith('/manifest')) reads++;
        return store.getBuffer(key, options);
      },
    });
    return { store: wrapper, manifestsRead: () => reads };
  }

  async function point(repository: Repository, vm: string, tenant: string): Promise<string> {
    const writer = await repository.createRestorePointWriter({ vm: { uuid: vm, name: vm }, tenant });
    await writer.writeDisk({ key: 'd', virtualSize: 4096 }, [{ index: 0, data: randomBytes(4096) }]);
    return (await writer.commit()).id;
  }

  it("reads every manifest once, then only the VM's own; new and expired points are seen", async () => {
    const watched = counting(localRemote(dir.path));
    const repository = await initRepository(watched.store, {});
    const ids: Record<'vm-1' | 'vm-2' | 'vm-3', string[]> = { 'vm-1': [], 'vm-2': [], 'vm-3': [] };
    for (let round = 0; round < 3; round++)
      for (const vm of ['vm-1', 'vm-2', 'vm-3'] as const)
        ids[vm].push(await point(repository, vm, vm === 'vm-3' ? 'other' : 't'));

    const first = await repository.listRestorePoints({ vmUuid: 'vm-1', tenant: 't' });
    expect(first.map((summary) => summary.id)).toEqual(ids['vm-1']);
    expect(watched.manifestsRead()).toBe(9);

    const again = await repository.listRestorePoints({ vmUuid: 'vm-1', tenant: 't' });
    expect(again.map((summary) => summary.id)).toEqual(ids['vm-1']);
    expect(again.map((summary) => summary.manifest)).toEqual(first.map((summary) => summary.manifest));
    expect(watched.manifestsRead()).toBe(9 + 3);

    // Another tenant's VM is filtered by the remembered owner too.
    expect(await repository.listRestorePoints({ vmUuid: 'vm-3', tenant: 't' })).toEqual([]);
    expect(watched.manifestsRead()).toBe(12);

    const added = await point(repository, 'vm-2', 't');
    await repository.deleteRestorePoint(ids['vm-1'][0] ?? '');
    const later = await repository.listRestorePoints({ vmUuid: 'vm-1' });
    expect(later.map((summary) => summary.id)).toEqual(ids['vm-1'].slice(1));
    // The new point's manifest (its owner), then vm-1's two.
    expect(watched.manifestsRead()).toBe(12 + 1 + 2);
    expect((await repository.listRestorePoints({ vmUuid: 'vm-2' })).map((summary) => summary.id)).toEqual([
      ...ids['vm-2'],
      added,
    ]);
  });
});
