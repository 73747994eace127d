import { randomInt } from 'node:crypto';
import { ArchiveError } from './archive.errors';
import { parseArchiveManifestKey, segmentKey } from './archive.layout';
import type { ArchiveManifest } from './archive.manifest';
import type { ArchiveStore } from './archive.store';

export interface ArchiveVerifyOptions {
  /**
   * Which segments to re-read and re-hash: all (default), a fraction (0 < sample < 1, chosen at
   * random), or a count (sample >= 1), as a repository verify samples chunks (0: all). Every manifest is
   * read and the presence of every segment checked in any case.
   */
  sample?: number;
  /** Segments re-read at once (each is held in memory while it is checked); default 2. */
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (progress: { checkedSegments: number; totalSegments: number }) => void;
}

export interface BrokenArchive {
  manifestKey: string;
  label: string;
  /** Unknown when the manifest itself cannot be read. */
  vmUuid: string | undefined;
  reasons: string[];
}

export interface ArchiveVerifyReport {
  ok: boolean;
  archives: number;
  segments: number;
  checkedSegments: number;
  checkedBytes: number;
  brokenArchives: BrokenArchive[];
}

interface SegmentRef {
  manifestKey: string;
  manifest: ArchiveManifest;
  index: number;
}

export function archiveLabel(manifest: Pick<ArchiveManifest, 'id' | 'vm' | 'takenAt'>): string {
  return `${manifest.vm.name} @ ${manifest.takenAt} (archive ${manifest.id})`;
}

/**
 * Checks the full-backup archives of a remote: every manifest opens (tag and format), every
 * segment it lists is there (one listing of the remote's archives), and the sampled segments read
 * back to their size and SHA-256. Names every archive that cannot be restored and why. Damage is
 * reported, never thrown; a remote that cannot be read (I/O, permissions) throws, so that nothing
 * is declared damaged that is not.
 */
export async function verifyArchives(
  archives: ArchiveStore,
  options: ArchiveVerifyOptions = {},
): Promise<ArchiveVerifyReport> {
  const signal = options.signal;
  const broken = new Map<string, BrokenArchive>();
  const breakArchive = (manifestKey: string, label: string, vmUuid: string | undefined, reason: string) => {
    const entry = broken.get(manifestKey) ?? { manifestKey, label, vmUuid, reasons: [] };
    entry.reasons.push(reason);
    broken.set(manifestKey, entry);
  };

  // One listing of every archive object: manifests to read, segments to find.
  const stored = new Set(await archives.keys({ ...(signal === undefined ? {} : { signal }) }));
  const manifestKeys = [...stored].filter((key) => parseArchiveManifestKey(key) !== undefined);
  const present: SegmentRef[] = [];
  for (const manifestKey of manifestKeys) {
    let manifest: ArchiveManifest;
    try {
      manifest = await archives.readManifest(manifestKey, signal);
    } catch (error) {
      // Not an archive's damage (a remote that cannot be read): not ours to judge.
      if (!(error instanceof ArchiveError)) throw error;
      // Expired meanwhile (retention, a deletion): gone, not damaged.
      if (error.code !== 'ARCHIVE_NOT_FOUND')
        breakArchive(manifestKey, manifestKey, parseArchiveManifestKey(manifestKey)?.vmUuid, error.message);
      continue;
    }
    manifest.segments.forEach((_, index) => {
      const key = segmentKey(manifest.vm.uuid, manifest.id, index);
      if (stored.has(key)) present.push({ manifestKey, manifest, index });
      else
        breakArchive(
          manifestKey,
          archiveLabel(manifest),
          manifest.vm.uuid,
          `segment ${key} is missing; this archive cannot be restored`,
        );
    });
  }

  const chosen = sampled(present, options.sample);
  let checkedSegments = 0;
  let checkedBytes = 0;
  options.onProgress?.({ checkedSegments, totalSegments: chosen.length });
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < chosen.length) {
      const segment = chosen[next++];
      try {
        const plaintext = await archives.readSegment(segment.manifest, segment.index, signal);
        checkedBytes += plaintext.length;
      } catch (error) {
        if (!(error instanceof ArchiveError) || error.code === 'INVALID_ARGUMENT') throw error;
        breakArchive(
          segment.manifestKey,
          archiveLabel(segment.manifest),
          segment.manifest.vm.uuid,
          error.message,
        );
      }
      checkedSegments++;
      options.onProgress?.({ checkedSegments, totalSegments: chosen.length });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 2) }, worker));

  // Oldest first, as listed (damage is found in two passes).
  const brokenArchives = [...broken.values()].sort((a, b) => a.manifestKey.localeCompare(b.manifestKey));
  return {
    ok: brokenArchives.length === 0,
    archives: manifestKeys.length,
    segments: present.length,
    checkedSegments,
    checkedBytes,
    brokenArchives,
  };
}

/**
 * All of `items`, or a random `sample` of them: a fraction below 1 (at least one), else a count;
 * as a repository verify samples chunks (0 or none: all).
 */
function sampled<T>(items: readonly T[], sample: number | undefined): T[] {
  if (sample === undefined || !(sample > 0) || items.length === 0) return [...items];
  const count = Math.min(
    items.length,
    sample < 1 ? Math.max(1, Math.round(items.length * sample)) : Math.floor(sample),
  );
  const pool = [...items];
  // Partial Fisher-Yates: the first `count` places get a uniform random choice.
  for (let i = 0; i < count; i++) {
    const j = i + randomInt(pool.length - i);
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, count);
}
