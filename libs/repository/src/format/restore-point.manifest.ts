import { EnvelopeError } from './object.envelope';

export const MANIFEST_FORMAT = 'haven-restore-point';
export const MANIFEST_VERSION = 1;

/** What the caller says about the VM being backed up. */
export interface RestorePointVm {
  uuid: string;
  name: string;
  /** The VM record (XAPI fields the restore needs), stored as given. */
  record?: Record<string, unknown>;
}

export interface RestorePointReference {
  id: string;
  name?: string;
}

/** Given by the caller when a restore point is started. */
export interface RestorePointMeta {
  vm: RestorePointVm;
  /** Owner of the restore point (statistics and isolation are per tenant). */
  tenant?: string;
  job?: RestorePointReference;
  schedule?: RestorePointReference;
  /** Long-term retention tags: daily, weekly, monthly, yearly. */
  gfsTags?: string[];
  /** Anything else the caller wants back at restore time (pool, snapshot uuid, CBT state…). */
  attributes?: Record<string, unknown>;
}

export interface DiskMeta {
  /** Stable name of the disk within the VM: the VBD device / position ("xvda", "0"). */
  key: string;
  virtualSize: number;
  uuid?: string;
  name?: string;
  record?: Record<string, unknown>;
}

export interface RestorePointDisk extends DiskMeta {
  /** Object key of the disk index, relative to the remote root. */
  index: string;
  /** SHA-256 (hex) of the encoded index: binds it to this manifest. */
  indexDigest: string;
  blockSize: number;
  /** Blocks with data (not zero, not absent). */
  allocatedBlocks: number;
  /** Bytes of the allocated blocks: what the disk holds. */
  logicalBytes: number;
  /** Bytes of the chunk objects this run uploaded (new to the repository). */
  uploadedBytes: number;
  uploadedChunks: number;
  reusedChunks: number;
  /** Restore point whose index this disk started from (delta source), if any. */
  base?: string;
  /** Blocks taken unchanged from the base. */
  inheritedBlocks?: number;
}

export interface RestorePointManifest extends RestorePointMeta {
  format: typeof MANIFEST_FORMAT;
  version: number;
  id: string;
  /** ISO 8601, when the writer started (the snapshot time if the caller gave one in attributes). */
  createdAt: string;
  committedAt: string;
  disks: RestorePointDisk[];
  sizes: { logicalBytes: number; uploadedBytes: number };
  writer: { session: string; host: string };
}

export function restorePointLabel(manifest: Pick<RestorePointManifest, 'id' | 'vm' | 'createdAt'>): string {
  return `${manifest.vm.name} @ ${manifest.createdAt} (${manifest.id})`;
}

export function parseManifest(plaintext: Buffer, expectedId: string): RestorePointManifest {
  let value: unknown;
  try {
    value = JSON.parse(plaintext.toString('utf8'));
  } catch {
    throw new EnvelopeError('manifest is not JSON');
  }
  const manifest = value as Partial<RestorePointManifest> | null;
  if (manifest?.format !== MANIFEST_FORMAT)
    throw new EnvelopeError('manifest has no haven-restore-point format tag');
  if (typeof manifest.version !== 'number' || manifest.version > MANIFEST_VERSION) {
    throw new EnvelopeError(`manifest version ${String(manifest.version)} is not supported`);
  }
  if (manifest.id !== expectedId)
    throw new EnvelopeError(`manifest names restore point ${String(manifest.id)}`);
  if (typeof manifest.vm?.uuid !== 'string' || !Array.isArray(manifest.disks)) {
    throw new EnvelopeError('manifest lacks its VM or disks');
  }
  for (const disk of manifest.disks) {
    if (
      typeof disk.index !== 'string' ||
      typeof disk.indexDigest !== 'string' ||
      typeof disk.virtualSize !== 'number'
    ) {
      throw new EnvelopeError(`manifest disk ${JSON.stringify(disk.key)} lacks its index`);
    }
  }
  return manifest as RestorePointManifest;
}
