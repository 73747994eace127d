import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { scratchDir } from '@haven/testing';
import type { RemoteStore } from '@haven/remote-sdk';
import { initRepository, openRepository, type Repository } from './repository';
import { blocksOf, collect, localRemote, patternedDisk, rawImage } from './testing/disk-pattern.fixture';

const ROOT = join(__dirname, '..', '..', '..');

/** Every listed restore point must read back exactly the disk its seed generates; returns their ids. */
async function expectAllRestorePointsExact(repo: Repository): Promise<string[]> {
  const points = await repo.listRestorePoints();
  for (const point of points) {
    const seed = point.manifest.attributes?.['seed'] as string;
    const raw = await collect((await repo.openRestorePoint(point.id)).disk('xvda').createReadStream());
    expect(raw.equals(rawImage(patternedDisk(seed, 12)))).toBe(true);
  }
  return points.map((point) => point.id).sort();
}

/**
 * The restore points a crashed run may legitimately have left: every one it reported committed,
 * plus possibly the one it was killed in, whose manifest can land before the child reports it.
 */
function expectCommittedSet(listed: string[], committed: string[], killedIn: string[]): void {
  const unreported = listed.filter((id) => !committed.includes(id));
  expect(committed.filter((id) => !listed.includes(id))).toEqual([]);
  expect(unreported.filter((id) => !killedIn.includes(id))).toEqual([]);
}

describe('crash safety', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  beforeEach(async () => (dir = await scratchDir('haven-crash-')));
  afterEach(() => dir.cleanup());

  it('a writer SIGKILLed at random points never leaves a restore point that reads wrong', async () => {
    await initRepository(localRemote(dir.path), { key: 'crash', kdf: { N: 1024 } });
    const committed: string[] = [];
    const started: string[] = [];
    const killedIn: string[] = [];
    for (let run = 0; run < 5; run++) {
      const child = spawn(
        process.execPath,
        [
          join(ROOT, 'bin/run.js'),
          join(__dirname, 'testing/crash-writer.script.ts'),
          dir.path,
          'crash',
          `run${run}`,
        ],
        {
          cwd: ROOT,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let output = '';
      child.stdout.on('data', (data: Buffer) => (output += data.toString()));
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      // Wait until it writes, then kill at a random moment of the writing.
      while (!output.includes('started') && child.exitCode === null) await sleep(20);
      await sleep(Math.floor(Math.random() * 1500));
      // Kill inside a write (after its "started", before its "committed"), wherever the random
      // wait ended: a kill between two writes would test nothing.
      const writing = (): boolean => output.trimEnd().split('\n').at(-1)?.startsWith('started') === true;
      while (!writing() && child.exitCode === null) await sleep(1);
      child.kill('SIGKILL');
      await exited;
      const ids = (word: string): string[] =>
        [...output.matchAll(new RegExp(`^${word} (\\S+)$`, 'gm'))].map((match) => match[1]);
      const runCommitted = ids('committed');
      const runStarted = ids('started');
      committed.push(...runCommitted);
      started.push(...runStarted);
      killedIn.push(...runStarted.filter((id) => !runCommitted.includes(id)));
    }
    expect(started.length).toBeGreaterThan(committed.length); // at least some runs died mid-write

    const repo = await openRepository(localRemote(dir.path), { key: 'crash' });
    const listed = await expectAllRestorePointsExact(repo);
    expectCommittedSet(listed, committed, killedIn);
    expect((await repo.verify()).ok).toBe(true);
    // Once the dead writers' markers expire, GC removes their leftovers; committed points stay exact.
    await sleep(500);
    const gc = await repo.collectGarbage({ safetyWindowMs: 0 });
    expect(gc.liveWriters).toEqual([]);
    expect(gc.orphanRestorePointsRemoved.length).toBeLessThanOrEqual(killedIn.length);
    // GC never removes a committed restore point.
    expect(await expectAllRestorePointsExact(repo)).toEqual(listed);
    expect((await repo.verify()).ok).toBe(true);
    // No folder without a manifest is left behind.
    const folders = new Set<string>();
    for await (const object of repo.store.listAll('restore-points/')) folders.add(object.key.split('/')[1]);
    expect([...folders].sort()).toEqual((await repo.listRestorePointIds()).sort());
  }, 120_000);

  it('a failing remote mid-write leaves no restore point and abort cleans its indexes', async () => {
    const real = localRemote(dir.path);
    const repo = await initRepository(real, {});
    let chunkPuts = 0;
    // Failure injection over the real local remote: the 5th chunk upload fails.
    const failing: RemoteStore = Object.create(real, {
      stageIfAbsent: {
        value: async (key: string, body: Buffer) => {
          if (key.startsWith('chunks/') && ++chunkPuts === 5) throw new Error('injected: connection reset');
          return real.stageIfAbsent(key, body);
        },
      },
    }) as RemoteStore;
    const flaky = await openRepository(failing);
    const disk = patternedDisk('fail', 12);
    const writer = await flaky.createRestorePointWriter({ vm: { uuid: 'vm', name: 'vm' } });
    await writer.writeDisk(
      { key: 'xvda', virtualSize: disk.virtualSize },
      blocksOf(patternedDisk('fail-first', 3)),
    );
    await expect(
      writer.writeDisk({ key: 'xvdb', virtualSize: disk.virtualSize }, blocksOf(disk)),
    ).rejects.toThrow(/injected/);
    await expect(writer.commit()).rejects.toMatchObject({ code: 'WRITER_CLOSED' });
    expect(await repo.listRestorePointIds()).toEqual([]);
    await writer.abort();
    expect((await real.list('restore-points/')).objects).toEqual([]);
    expect((await real.list('sessions/')).objects).toEqual([]);
    expect((await repo.verify()).ok).toBe(true);
  });
});
