import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import localRemote from '@haven/remote-local';
import type { RemoteStore } from '@haven/remote-sdk';
import { initRepository } from '@haven/repository';
import { scratchDir } from '@haven/testing';
import { segmentKey } from './archive.layout';
import { ArchiveStore } from './archive.store';
import { archiveLabel, verifyArchives } from './archive.verifier';
import { VM, writeArchive } from './testing/archive.fixture';

const KiB = 1024;
const FAST_KDF = { N: 1024, r: 8, p: 1 };

describe('verifying full-backup archives', () => {
  let folder: { path: string; cleanup: () => Promise<void> };
  let store: RemoteStore;

  beforeEach(async () => {
    folder = await scratchDir('haven-archive-verify-');
    store = await localRemote.create({ path: folder.path }, { name: 'archive-verify' });
  });
  afterEach(async () => {
    await store.close();
    await folder.cleanup();
  });

  /** Two archives of 3 segments each (4 KiB, 4 KiB, 1 KiB + 7) in an encrypted repository. */
  async function twoArchives() {
    const archives = ArchiveStore.forRepository(
      await initRepository(store, { key: 'verify passphrase', kdf: FAST_KDF }),
    );
    const first = await writeArchive(archives, randomBytes(9 * KiB + 7), 4 * KiB, 'task-first');
    const second = await writeArchive(archives, randomBytes(9 * KiB + 7), 4 * KiB, 'task-second');
    return { archives, first, second };
  }
  const flipByte = async (key: string, at: number) => {
    const path = join(folder.path, key);
    const bytes = await readFile(path);
    bytes[at] ^= 0x01;
    await writeFile(path, bytes);
  };

  it('reads back every segment of sound archives and finds nothing', async () => {
    const { archives } = await twoArchives();
    const progress: number[] = [];
    const report = await verifyArchives(archives, {
      onProgress: ({ checkedSegments }) => progress.push(checkedSegments),
    });
    expect(report).toEqual({
      ok: true,
      archives: 2,
      segments: 6,
      checkedSegments: 6,
      checkedBytes: 2 * (9 * KiB + 7),
      brokenArchives: [],
    });
    expect(progress.at(-1)).toBe(6);
  });

  it('names the archive whose segment was altered, missing, or whose manifest was altered, and only those', async () => {
    const { archives, first, second } = await twoArchives();
    await flipByte(segmentKey(VM, first.manifest.id, 1), 100);
    let report = await verifyArchives(archives);
    expect(report.ok).toBe(false);
    expect(report.brokenArchives).toEqual([
      {
        manifestKey: first.manifestKey,
        label: archiveLabel(first.manifest),
        vmUuid: VM,
        reasons: [expect.stringContaining(segmentKey(VM, first.manifest.id, 1))],
      },
    ]);

    await rm(join(folder.path, segmentKey(VM, second.manifest.id, 2)));
    report = await verifyArchives(archives);
    expect(report.brokenArchives.map((archive) => [archive.manifestKey, archive.reasons])).toEqual([
      [first.manifestKey, [expect.stringContaining('damaged')]],
      [
        second.manifestKey,
        [`segment ${segmentKey(VM, second.manifest.id, 2)} is missing; this archive cannot be restored`],
      ],
    ]);
    // A missing segment is not read: 5 of the 6 listed.
    expect([report.segments, report.checkedSegments]).toEqual([5, 5]);

    await flipByte(second.manifestKey, 40);
    report = await verifyArchives(archives);
    expect(report.brokenArchives.map((archive) => [archive.manifestKey, archive.vmUuid])).toEqual([
      [first.manifestKey, VM],
      [second.manifestKey, VM],
    ]);
    expect(report.brokenArchives[1]?.reasons).toEqual([expect.stringContaining(second.manifestKey)]);
  });

  it('re-reads a sample of segments when asked: a count, or a fraction', async () => {
    const { archives } = await twoArchives();
    expect(await verifyArchives(archives, { sample: 2 })).toMatchObject({
      ok: true,
      segments: 6,
      checkedSegments: 2,
    });
    expect(await verifyArchives(archives, { sample: 0.5 })).toMatchObject({ ok: true, checkedSegments: 3 });
    expect(await verifyArchives(archives, { sample: 0 })).toMatchObject({ ok: true, checkedSegments: 6 });
  });

  it('throws rather than calls an archive damaged when a segment cannot be read (I/O)', async () => {
    const { archives } = await twoArchives();
    const failing = Object.create(archives) as ArchiveStore;
    failing.readSegment = () =>
      Promise.reject(Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' }));
    await expect(verifyArchives(failing)).rejects.toThrow(/EIO/);
  });
});
