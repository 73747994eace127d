import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { describeIntegration, scratchDir } from '@haven/testing';
import {
  VHD_BLOCK_SIZE,
  VhdChain,
  VhdImage,
  createRawStream,
  createRawStreamFromVhdStream,
  createVhdStream,
  createVhdStreamFromRaw,
  openFileSource,
  sectorBitmapOf,
} from './index';
import { collect, expectBytes, patternBlock, patternRaw } from './vhd.fixture';

const run = promisify(execFile);
const MiB = 1024 * 1024;

async function qemuImg(...args: string[]): Promise<string> {
  const { stdout } = await run('qemu-img', args);
  return stdout;
}

describeIntegration('VHD against qemu-img', ['qemu-img'], () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  beforeAll(async () => {
    dir = await scratchDir('haven-vhd-');
  });
  afterAll(async () => {
    await dir.cleanup();
  });

  it('raw -> our dynamic VHD is identical to the raw for qemu-img compare, holes left out', async () => {
    // 13 MiB + 1 sector: 7 blocks, the last one short; blocks 1, 2 and 5 are all zeros.
    const virtualSize = 13 * MiB + 512;
    const raw = patternRaw('q1', virtualSize, [0, 3, 4, 6]);
    const rawPath = join(dir.path, 'disk.raw');
    const vhdPath = join(dir.path, 'disk.vhd');
    await writeFile(rawPath, raw);
    const source = await openFileSource(rawPath);
    try {
      await pipeline(await createVhdStreamFromRaw(source), createWriteStream(vhdPath));
    } finally {
      await source.close();
    }
    await qemuImg('compare', '-f', 'raw', '-F', 'vpc', rawPath, vhdPath);
    const info = JSON.parse(await qemuImg('info', '--output=json', '-f', 'vpc', vhdPath)) as {
      'virtual-size': number;
    };
    expect(info['virtual-size']).toBe(virtualSize);
    const image = await VhdImage.openFile(vhdPath);
    try {
      expect(image.allocatedBlocks).toEqual([0, 3, 4, 6]);
    } finally {
      await image.close();
    }
  });

  it('qemu-img-created dynamic VHD -> our image reader and stream parser -> the same raw', async () => {
    const virtualSize = 10 * MiB + 4096;
    const raw = patternRaw('q2', virtualSize, [1, 2, 5]);
    const rawPath = join(dir.path, 'q2.raw');
    const vhdPath = join(dir.path, 'q2.vhd');
    await writeFile(rawPath, raw);
    await qemuImg(
      'convert',
      '-f',
      'raw',
      '-O',
      'vpc',
      '-o',
      'subformat=dynamic,force_size=on',
      rawPath,
      vhdPath,
    );
    const image = await VhdImage.openFile(vhdPath);
    try {
      expect(image.virtualSize).toBe(virtualSize);
      expectBytes(await collect(createRawStream(image)), raw);
      expectBytes(
        await image.read(VHD_BLOCK_SIZE - 100, 300),
        raw.subarray(VHD_BLOCK_SIZE - 100, VHD_BLOCK_SIZE + 200),
      );
    } finally {
      await image.close();
    }
    expectBytes(await collect(createRawStreamFromVhdStream(createReadStream(vhdPath))), raw);
  });

  it('a differencing child we write, read through our chain, equals qemu-img applying the same writes', async () => {
    // qemu 7.2's vpc driver ignores parents (it opens a differencing VHD as a standalone dynamic
    // disk), so the chain cannot be checked by qemu directly: we compare our chain reader to the
    // expected raw, and check that qemu reads the child's own blocks exactly as we wrote them.
    const virtualSize = 8 * MiB;
    const baseRaw = patternRaw('base', virtualSize, [0, 1, 2]);
    const basePath = join(dir.path, 'base.vhd');
    const childPath = join(dir.path, 'child.vhd');
    const baseUuid = '6c3f4e2a-0d1b-4c5e-9f8a-7b6c5d4e3f2a';
    await pipeline(
      createVhdStream({
        virtualSize,
        allocatedBlocks: [0, 1, 2],
        type: 'dynamic',
        uuid: baseUuid,
        readBlock: (index) => Promise.resolve(patternBlock('base', index)),
      }),
      createWriteStream(basePath),
    );
    // Child: block 1 overrides sectors 0-7 and 100 only; block 3 is new and complete.
    const partial = sectorBitmapOf([0, 1, 2, 3, 4, 5, 6, 7, 100]);
    await pipeline(
      createVhdStream({
        virtualSize,
        allocatedBlocks: [1, 3],
        type: 'differencing',
        parentUuid: baseUuid,
        parentUnicodeName: 'base.vhd',
        parentLocators: [
          { platform: 'W2ru', path: '.\\base.vhd' },
          { platform: 'MacX', path: 'file://./base.vhd' },
        ],
        sectorBitmap: (index) => (index === 1 ? partial : undefined),
        readBlock: (index) => Promise.resolve(patternBlock('child', index)),
      }),
      createWriteStream(childPath),
    );
    const expected = Buffer.from(baseRaw);
    const childBlock1 = patternBlock('child', 1);
    for (const sector of [0, 1, 2, 3, 4, 5, 6, 7, 100]) {
      childBlock1.copy(expected, VHD_BLOCK_SIZE + sector * 512, sector * 512, sector * 512 + 512);
    }
    patternBlock('child', 3).copy(expected, 3 * VHD_BLOCK_SIZE);

    const chain = new VhdChain([await VhdImage.openFile(basePath), await VhdImage.openFile(childPath)]);
    try {
      expect(chain.allocatedBlocks).toEqual([0, 1, 2, 3]);
      expectBytes(await collect(createRawStream(chain)), expected);
    } finally {
      await chain.close();
    }
    const childAsRaw = join(dir.path, 'child.raw');
    await qemuImg('convert', '-f', 'vpc', '-O', 'raw', childPath, childAsRaw);
    const qemuView = await readFile(childAsRaw);
    expectBytes(qemuView.subarray(3 * VHD_BLOCK_SIZE), patternBlock('child', 3));
    expectBytes(qemuView.subarray(VHD_BLOCK_SIZE, 2 * VHD_BLOCK_SIZE), childBlock1);
  });
});
