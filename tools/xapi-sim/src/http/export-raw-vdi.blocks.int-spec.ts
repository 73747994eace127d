import { createHash } from 'node:crypto';
import { describeIntegration } from '@haven/testing';
import { XenApiClientDriver } from '../testing/xen-api-client.driver';
import type { XapiSimulator } from '../xapi-simulator';
import { parseBlockList } from './export-raw-vdi.handler';
import { startSimulatorClientLab, type SimulatorClientLab } from '../testing/simulator-client.lab';

const MiB = 1024 * 1024;

describe('export_raw_vdi block lists', () => {
  it('parses single blocks and ranges, refusing bad, decreasing, overlapping or out-of-disk ones', () => {
    expect(parseBlockList('0-2,5,7-8', 10)).toEqual([0, 1, 2, 5, 7, 8]);
    expect(parseBlockList('', 10)).toEqual([]);
    expect(() => parseBlockList('3,1', 10)).toThrow(/increase without overlap/);
    expect(() => parseBlockList('1-3,3', 10)).toThrow(/increase without overlap/);
    expect(() => parseBlockList('4-2', 10)).toThrow(/ends before it starts/);
    expect(() => parseBlockList('9-10', 10)).toThrow(/block 10 is past the disk's last block 9/);
    expect(() => parseBlockList('x', 10)).toThrow(/"x" is not a block index/);
  });
});

describeIntegration('export_raw_vdi?blocks= through the real xen-api client', [], () => {
  let sim: XapiSimulator;
  let client: XenApiClientDriver;
  // 5 blocks and 1 KiB: the last block is short
  const size = 10 * MiB + 1024;

  let lab: SimulatorClientLab;

  beforeAll(async () => {
    lab = await startSimulatorClientLab({
      scratchPrefix: 'haven-sim-blocks-',
      vms: 1,
      diskSize: size,
      seed: 'blocks',
    });
    ({ sim, client } = lab);
  });

  afterAll(() => lab.close());

  it('sends exactly the listed blocks, in order, the last one cut at the disk end', async () => {
    const vm = sim.listVms().find((summary) => summary.name === 'sim-vm-0')!;
    const vdi = vm.disks[0].vdi;
    const disk = sim.pool.disks.get(vdi);
    const expected = createHash('sha256');
    for (const block of [1, 3, 4, 5]) {
      const length = Math.min(2 * MiB, size - block * 2 * MiB);
      expected.update(await disk.read(block * 2 * MiB, length));
    }
    const download = await client.getResource('/export_raw_vdi/', { vdi, format: 'raw', blocks: '1,3-5' });
    expect(download.task.ok).toBe(true);
    expect(download.bytes).toBe(3 * 2 * MiB + 1024);
    expect(download.sha256).toBe(expected.digest('hex'));

    // A VHD export has no block list: refused before any byte is sent.
    await expect(client.getResource('/export_raw_vdi/', { vdi, format: 'vhd', blocks: '1' })).rejects.toThrow(
      /400/,
    );
  });
});
