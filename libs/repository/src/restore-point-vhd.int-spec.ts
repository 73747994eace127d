import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { describeIntegration, scratchDir } from '@haven/testing';
import { initRepository } from './repository';
import { blocksOf, localRemote, patternedDisk, rawImage } from './testing/disk-pattern.fixture';

const run = promisify(execFile);

describeIntegration('restore point as VHD, checked by qemu-img', ['qemu-img'], () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  beforeAll(async () => (dir = await scratchDir('haven-vhd-')));
  afterAll(() => dir.cleanup());

  it.each([{ key: undefined }, { key: 'vhd-secret' }])(
    'a dynamic VHD export converts to the original raw disk (key: $key)',
    async ({ key }) => {
      const path = join(dir.path, `repo-${key ?? 'plain'}`);
      await mkdir(path);
      const repo = await initRepository(localRemote(path), key ? { key, kdf: { N: 1024 } } : {});
      const disk = patternedDisk(`qemu-${key ?? 'plain'}`, 20, 512 * 9);
      const writer = await repo.createRestorePointWriter({ vm: { uuid: 'vm', name: 'vm' } });
      await writer.writeDisk({ key: 'xvda', virtualSize: disk.virtualSize }, blocksOf(disk));
      const manifest = await writer.commit();
      const vhdPath = join(dir.path, `${manifest.id}.vhd`);
      const rawPath = join(dir.path, `${manifest.id}.raw`);
      await pipeline(
        (await repo.openRestorePoint(manifest.id)).disk('xvda').createVhdStream({ type: 'dynamic' }),
        createWriteStream(vhdPath),
      );
      const info = JSON.parse(
        (await run('qemu-img', ['info', '--output=json', '-f', 'vpc', vhdPath])).stdout,
      ) as { 'virtual-size': number };
      expect(info['virtual-size']).toBeGreaterThanOrEqual(disk.virtualSize);
      await run('qemu-img', ['convert', '-f', 'vpc', '-O', 'raw', vhdPath, rawPath]);
      const raw = await readFile(rawPath);
      expect(raw.subarray(0, disk.virtualSize).equals(rawImage(disk))).toBe(true);
      expect(raw.subarray(disk.virtualSize).every((byte) => byte === 0)).toBe(true);
    },
  );
});
