import { join } from 'node:path';
import { describeIntegration } from '@haven/testing';
import { CBT_CHUNK_SIZE } from './storage/block.constants';
import { XenApiClientDriver } from './testing/xen-api-client.driver';
import { startXapiSimulator, type XapiSimulator } from './xapi-simulator';
import { startSimulatorClientLab, type SimulatorClientLab } from './testing/simulator-client.lab';

const MiB = 1024 * 1024;

/** Indexes of the set bits of a `VDI.list_changed_blocks` answer (most significant bit first). */
function changedChunks(bitmap: string): number[] {
  const bytes = Buffer.from(bitmap, 'base64');
  const set: number[] = [];
  for (let index = 0; index < bytes.length * 8; index++) {
    if (((bytes[index >> 3] ?? 0) & (0x80 >> (index & 7))) !== 0) set.push(index);
  }
  return set;
}

describeIntegration('xapi-sim state folder and changed block tracking', [], () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let sim: XapiSimulator;
  let client: XenApiClientDriver;

  let lab: SimulatorClientLab;

  beforeAll(async () => {
    lab = await startSimulatorClientLab({
      scratchPrefix: 'haven-xapi-sim-state-',
      vms: 2,
      diskSize: 32 * MiB,
      seed: 'persist',
    });
    ({ dir, sim, client } = lab);
  });

  afterAll(() => lab.close());

  it('seeds the same content for the same seed, and different content for another seed', async () => {
    const other = await startXapiSimulator({
      stateDir: join(dir.path, 'same-seed'),
      vms: 2,
      diskSize: 32 * MiB,
      seed: 'persist',
    });
    const third = await startXapiSimulator({
      stateDir: join(dir.path, 'other-seed'),
      vms: 2,
      diskSize: 32 * MiB,
      seed: 'another',
    });
    try {
      const hash = async (simulator: XapiSimulator): Promise<string> =>
        (await simulator.diskHash('sim-vm-1')).sha256;
      expect(await hash(other)).toBe(await hash(sim));
      expect(await hash(third)).not.toBe(await hash(sim));
      expect(other.listVms().map((vm) => vm.uuid)).toEqual(sim.listVms().map((vm) => vm.uuid));
      // Seeded disks hold data, zeros and repeats: not everything allocated, not nothing.
      const disk = sim.pool.disks.get(
        sim.listVms().find((vm) => vm.name === 'sim-vm-1')?.disks[0]?.vdi ?? '',
      );
      expect(disk.allocatedBlocks().length).toBeGreaterThan(0);
      expect(disk.allocatedBlocks().length).toBeLessThan(disk.blockCount);
    } finally {
      await other.close();
      await third.close();
    }
  });

  it('keeps VMs, snapshots, tags and disk content across a restart on the same folder', async () => {
    const stateDir = join(dir.path, 'restart');
    const first = await startXapiSimulator({ stateDir, vms: 2, diskSize: 16 * MiB, seed: 'restart' });
    const vm = first.listVms().find((summary) => summary.name === 'sim-vm-1');
    if (vm === undefined) throw new Error('sim-vm-1 is missing');
    const snapshot = first.pool.copyVm(vm.ref, 'kept', 'snapshot');
    first.pool.store.setField('VM', vm.ref, 'tags', ['kept-tag']);
    await first.writeRandom(vm.ref, { blocks: 2, bytes: 3000, offset: 5 * MiB + 11 });
    const before = await first.diskHash(vm.ref);
    const snapshotBefore = await first.diskHash(snapshot);
    const usedSlots = first.pool.disks.blocks.usedSlots;
    await first.close();

    const second = await startXapiSimulator({
      stateDir,
      vms: 5,
      diskSize: 64 * MiB,
      seed: 'ignored on restart',
    });
    try {
      expect(second.listVms().map((summary) => summary.name)).toEqual(
        first.listVms().map((summary) => summary.name),
      );
      expect((await second.diskHash(vm.ref)).sha256).toBe(before.sha256);
      expect((await second.diskHash(snapshot)).sha256).toBe(snapshotBefore.sha256);
      expect(second.pool.store.get('VM', vm.ref)['tags']).toEqual(['kept-tag']);
      expect(second.pool.store.get('VM', snapshot)['snapshot_of']).toBe(vm.ref);
      expect(second.pool.disks.blocks.usedSlots).toBe(usedSlots);
      // The restarted pool serves the real client.
      const again = new XenApiClientDriver();
      await again.connect(second.url, second.user, second.password);
      expect(await again.call('VM.get_name_label', vm.ref)).toBe('sim-vm-1');
      await again.close();
    } finally {
      await second.close();
    }
  });

  it('tracks changed blocks between snapshots at 64 KiB granularity, and after data_destroy', async () => {
    const vm = sim.listVms().find((summary) => summary.name === 'sim-vm-1');
    const vdi = vm?.disks[0]?.vdi ?? '';
    await expect(client.callAsync('VDI.list_changed_blocks', vdi, vdi)).rejects.toMatchObject({
      code: 'VDI_NO_CBT_METADATA',
    });
    await client.callAsync('VDI.enable_cbt', vdi);
    expect(await client.call('VDI.get_cbt_enabled', vdi)).toBe(true);
    const first = await client.callAsync<string>('VM.snapshot', vm?.ref, 'cbt-1');
    const firstVdi = sim.listVms().find((summary) => summary.ref === first)?.disks[0]?.vdi ?? '';
    expect(await client.call('VDI.get_cbt_enabled', firstVdi)).toBe(true);

    // Three bytes straddling a 64 KiB boundary, and a whole 2 MiB block.
    await sim.writeRandom(vdi, { bytes: 3, offset: 5 * CBT_CHUNK_SIZE - 1 });
    await sim.pool.disks.get(vdi).write(4 * 2 * MiB, Buffer.alloc(2 * MiB, 1));
    const second = await client.callAsync<string>('VM.snapshot', vm?.ref, 'cbt-2');
    const secondVdi = sim.listVms().find((summary) => summary.ref === second)?.disks[0]?.vdi ?? '';
    const blockChunks = Array.from({ length: 32 }, (_, i) => 4 * 32 + i);
    expect(
      changedChunks(await client.callAsync<string>('VDI.list_changed_blocks', firstVdi, secondVdi)),
    ).toEqual([4, 5, ...blockChunks]);

    // Writing identical bytes is still a write for CBT.
    await sim.pool.disks.get(vdi).write(0, await sim.pool.disks.get(vdi).read(0, 10));
    expect(changedChunks(await client.callAsync<string>('VDI.list_changed_blocks', secondVdi, vdi))).toEqual([
      0,
    ]);

    // The base snapshot's data goes; its CBT metadata stays usable.
    await client.callAsync('VDI.data_destroy', firstVdi);
    expect(await client.call('VDI.get_type', firstVdi)).toBe('cbt_metadata');
    expect(sim.pool.disks.get(firstVdi).allocatedBytes).toBe(0);
    expect(
      changedChunks(await client.callAsync<string>('VDI.list_changed_blocks', firstVdi, secondVdi)),
    ).toEqual([4, 5, ...blockChunks]);
    await expect(client.getResource('/export_raw_vdi/', { vdi: firstVdi, format: 'vhd' })).rejects.toThrow(
      'unexpected 500',
    );

    // Disabling CBT breaks the lineage: an older snapshot is no longer comparable.
    await client.callAsync('VDI.disable_cbt', vdi);
    await client.callAsync('VDI.enable_cbt', vdi);
    await expect(client.callAsync('VDI.list_changed_blocks', secondVdi, vdi)).rejects.toMatchObject({
      code: 'SR_BACKEND_FAILURE_460',
    });
  });

  it('reports SR_FULL when a write needs a block the SR has no room for', async () => {
    const vm = sim.listVms().find((summary) => summary.name === 'sim-vm-0');
    const vdi = vm?.disks[0]?.vdi ?? '';
    const sr = sim.pool.disks.get(vdi).sr;
    const used = sim.pool.disks.srUtilisation(sr);
    sim.setSrSize(sr, used + 2 * MiB);
    const free = sim.pool.disks.get(vdi).blockCount - sim.pool.disks.get(vdi).allocatedBlocks().length;
    expect(free).toBeGreaterThan(1);
    await expect(sim.writeRandom(vdi, { bytes: 32 * MiB })).rejects.toMatchObject({ code: 'SR_FULL' });
    sim.setSrSize(sr, 4 * 1024 ** 4);
  });

  it('gives snapshots the space they share, and frees it when the last user goes', async () => {
    const vm = sim.listVms().find((summary) => summary.name === 'sim-vm-0');
    const vdi = vm?.disks[0]?.vdi ?? '';
    const slots = sim.pool.disks.blocks.usedSlots;
    const snapshot = await client.callAsync<string>('VM.snapshot', vm?.ref, 'space');
    expect(sim.pool.disks.blocks.usedSlots).toBe(slots);
    // A block the snapshot shares: the write copies it first.
    const shared = sim.pool.disks.get(vdi).allocatedBlocks()[0] ?? 0;
    await sim.writeRandom(vdi, { bytes: 100, offset: shared * 2 * MiB + 5 });
    expect(sim.pool.disks.blocks.usedSlots).toBe(slots + 1);
    const snapshotVdis =
      sim
        .listVms()
        .find((summary) => summary.ref === snapshot)
        ?.disks.map((disk) => disk.vdi) ?? [];
    await client.callAsync('VM.destroy', snapshot);
    for (const snapshotVdi of snapshotVdis) await client.callAsync('VDI.destroy', snapshotVdi);
    expect(sim.pool.disks.blocks.usedSlots).toBe(slots);
  });
});
