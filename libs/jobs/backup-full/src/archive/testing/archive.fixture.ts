import { Readable } from 'node:stream';
import { newArchiveId } from '../archive.layout';
import { ARCHIVE_FORMAT, ARCHIVE_FORMAT_VERSION, type ArchiveManifest } from '../archive.manifest';
import { cutSegments } from '../archive.segmenter';
import type { ArchiveStore } from '../archive.store';

/** The VM the archives of the unit specs belong to. */
export const VM = '4f2c1a7e-9b1d-4c55-8e0a-2d9f6b3c7a10';

/** Writes `xva` as an archive the way the executor does: segments, then the manifest. */
export async function writeArchive(
  archives: ArchiveStore,
  xva: Buffer,
  segmentSize: number,
  taskId = 'task-1',
): Promise<{ manifest: ArchiveManifest; manifestKey: string }> {
  const location = { vmUuid: VM, archiveId: newArchiveId(taskId) };
  const segments = [];
  for await (const segment of cutSegments(
    Readable.from([xva.subarray(0, 1000), xva.subarray(1000)]),
    segmentSize,
  ))
    segments.push(await archives.writeSegment(location, segment.index, segment.data, segment.sha256));
  const manifest: ArchiveManifest = {
    format: ARCHIVE_FORMAT,
    version: ARCHIVE_FORMAT_VERSION,
    id: location.archiveId,
    vm: { uuid: VM, name: 'web', record: { name_label: 'web', memory_static_max: 1024 } },
    tenant: 'tenant-1',
    job: { id: 'job-1', name: 'weekly' },
    taskId,
    takenAt: new Date().toISOString(),
    createdAt: new Date().toISOString(),
    compression: 'zstd',
    encrypted: archives.sealer.encrypted,
    segmentSize,
    segments,
    totalSize: xva.length,
    storedSize: segments.reduce((sum, segment) => sum + segment.storedSize, 0),
  };
  return { manifest, manifestKey: await archives.commit(manifest) };
}
