import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type request from 'supertest';
import { XapiPool, type VmInfo } from '@haven/xapi';
import type { XapiSimulator } from '@haven/xapi-sim';
import { buildCli } from '../../cli/src/haven.cli';
import { type BackupLab, type RunBody, startBackupLab } from './backup-lab.fixture';

interface RestoreResult {
  vmUuid: string;
  disks: { virtualSize: number; bytesSent: number; format: string }[];
  vifs: { device: string; mac: string; networkUuid: string; networkName: string; matchedBy: string }[];
  networkWarnings: string[];
}

/** Restored VMs get the recorded network interfaces, and their disks travel as sparse VHDs. */
describe('restore a VM with its networks, sparse (through the gateway)', () => {
  let lab: BackupLab;
  let simulator: XapiSimulator;
  let xapi: XapiPool;
  let session = '';
  let pointId = '';
  let source: VmInfo;
  let hashAtBackup = '';
  const auth = (req: request.Test) => lab.auth(req);

  /** Plain JSON-RPC, for what XapiPool does not do (networks are the pool's business). */
  const rpc = async (method: string, params: unknown[]): Promise<unknown> => {
    const response = await fetch(`${simulator.url}/jsonrpc`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
    });
    const body = (await response.json()) as { result?: unknown; error?: { message: string } };
    if (body.error !== undefined) throw new Error(body.error.message);
    return body.result;
  };
  const createNetwork = async (name: string, mtu: number): Promise<string> =>
    (await rpc('network.create', [
      session,
      { name_label: name, name_description: '', MTU: mtu, other_config: {} },
    ])) as string;

  const restore = async (body: Record<string, unknown>): Promise<RestoreResult> => {
    const started = await auth(lab.api().post(`/api/v1/restore-points/${pointId}/restore`))
      .send({ poolId: lab.poolId, ...body })
      .expect(202);
    const run: RunBody = await lab.waitForRun(started.body.runId);
    expect(run).toMatchObject({ status: 'success', kind: 'restore' });
    return run.tasks[0]?.result as RestoreResult;
  };

  beforeAll(async () => {
    lab = await startBackupLab({ seed: 'restore-networks', passphrase: 'restore networks passphrase' });
    simulator = lab.simulator;
    xapi = await XapiPool.connect({ url: simulator.url, username: 'root', password: 'pw' });
    session = (await rpc('session.login_with_password', ['root', 'pw'])) as string;
    // A second interface, on a network of its own with jumbo frames, before the backup.
    const storage = await createNetwork('storage', 9000);
    const vm = await xapi.getVm(lab.vm.uuid);
    await xapi.createVif(vm.ref, { device: '1', networkRef: storage, mtu: 9000 });
    source = await xapi.getVm(lab.vm.uuid);
    expect(source.vifs).toHaveLength(2);
    hashAtBackup = (await simulator.diskHash(source.uuid)).sha256;
    expect(await lab.runJob()).toMatchObject({ status: 'success' });
    const points = await auth(lab.api().get(`/api/v1/restore-points?jobId=${lab.jobId}`)).expect(200);
    pointId = points.body.items[0].id;
  }, 120_000);

  afterAll(async () => {
    await xapi.close();
    await lab.close();
  });

  it('restores each interface on the same network with a new MAC, disks sent as sparse VHDs', async () => {
    const result = await restore({ name: 'same networks' });
    const restored = await xapi.getVm(result.vmUuid);
    expect(restored.vifs.map((vif) => [vif.device, vif.networkUuid, vif.mtu])).toEqual(
      source.vifs.map((vif) => [vif.device, vif.networkUuid, vif.mtu]),
    );
    for (const [index, vif] of restored.vifs.entries()) expect(vif.mac).not.toBe(source.vifs[index]?.mac);
    expect(result.vifs.map((vif) => vif.matchedBy)).toEqual(['uuid', 'uuid']);
    expect(result.networkWarnings).toEqual([]);
    // The seeded disk is ~60 % allocated: a dynamic VHD of those blocks, not the whole raw disk.
    for (const disk of result.disks) {
      expect(disk.format).toBe('vhd');
      expect(disk.bytesSent).toBeLessThan(disk.virtualSize * 0.9);
    }
    expect((await simulator.diskHash(result.vmUuid)).sha256).toBe(hashAtBackup);
  }, 60_000);

  it('keeps the backed-up MACs when asked from the CLI (--keep-macs)', async () => {
    const lines: string[] = [];
    await buildCli((text) => lines.push(text), { HAVEN_URL: lab.baseUrl, HAVEN_KEY: lab.admin })
      .exitOverride()
      .parseAsync([
        'node',
        'haven',
        'restore-points',
        'restore',
        pointId,
        '--pool',
        lab.poolId,
        '--name',
        'same macs',
        '--keep-macs',
        '--follow',
      ]);
    expect(lines.at(-1)).toMatch(/: success$/);
    const restored = (await xapi.listVms()).find((vm) => vm.name === 'same macs')!;
    expect(restored.vifs.map((vif) => [vif.device, vif.mac])).toEqual(
      source.vifs.map((vif) => [vif.device, vif.mac]),
    );
  }, 60_000);

  it('finds a network again by name, or falls back to the management network and says so; keepMacs keeps the MACs', async () => {
    // The "storage" network is replaced by another of the same name: found by name. Its interfaces
    // (the source VM's, the backup snapshot's, the first restore's) go first, as XAPI requires.
    const storageUuid = source.vifs.find((vif) => vif.device === '1')!.networkUuid;
    const dropNetwork = async (ref: string): Promise<void> => {
      for (const vif of (await rpc('network.get_VIFs', [session, ref])) as string[])
        await rpc('VIF.destroy', [session, vif]);
      await rpc('network.destroy', [session, ref]);
    };
    await dropNetwork((await xapi.listNetworks()).find((network) => network.uuid === storageUuid)!.ref);
    const renewed = await createNetwork('storage', 1500);
    const byName = await restore({ name: 'by name', keepMacs: true });
    expect(byName.vifs.map((vif) => [vif.device, vif.matchedBy, vif.networkName])).toEqual([
      ['0', 'uuid', source.vifs[0]?.networkName],
      ['1', 'name', 'storage'],
    ]);
    expect(byName.vifs.map((vif) => vif.mac)).toEqual(source.vifs.map((vif) => vif.mac));

    // No such network any more: the management network takes the interface, with a warning.
    await dropNetwork(renewed);
    const fallback = await restore({ name: 'fallback' });
    const management = (await xapi.listNetworks()).find((network) => network.isManagement)!;
    expect(fallback.vifs.map((vif) => [vif.device, vif.matchedBy, vif.networkUuid])).toEqual([
      ['0', 'uuid', management.uuid],
      ['1', 'management', management.uuid],
    ]);
    expect(fallback.networkWarnings).toHaveLength(1);
    expect(fallback.networkWarnings[0]).toContain('"storage"');
    expect(fallback.networkWarnings[0]).toContain('management network');
    const restored = await xapi.getVm(fallback.vmUuid);
    expect(restored.vifs.map((vif) => vif.networkUuid)).toEqual([management.uuid, management.uuid]);
  }, 90_000);

  it('fails a restore whose chunk was damaged, naming it, and leaves no VM or disk behind', async () => {
    const remote = await auth(lab.api().get(`/api/v1/remotes/${lab.remoteId}`)).expect(200);
    const chunks = join(remote.body.settings.path as string, 'chunks');
    const first = async (dir: string): Promise<string> => {
      const entries = (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
        a.name.localeCompare(b.name),
      );
      const entry = entries[0];
      return entry.isDirectory() ? first(join(dir, entry.name)) : join(dir, entry.name);
    };
    const chunk = await first(chunks);
    const flip = async (): Promise<void> => {
      const handle = await open(chunk, 'r+');
      try {
        const byte = Buffer.alloc(1);
        await handle.read(byte, 0, 1, 4096);
        byte[0] ^= 0xff;
        await handle.write(byte, 0, 1, 4096);
      } finally {
        await handle.close();
      }
    };
    const vdisBefore = simulator.pool.store.all('VDI').length;
    await flip();
    try {
      const started = await auth(lab.api().post(`/api/v1/restore-points/${pointId}/restore`))
        .send({ poolId: lab.poolId, name: 'damaged' })
        .expect(202);
      const run = await lab.waitForRun(started.body.runId);
      expect(run).toMatchObject({ status: 'failure', kind: 'restore' });
      expect(run.tasks[0]?.error).toMatch(/chunk [0-9a-f]{64} on remote nas is damaged/);
      // A damaged chunk stays damaged: failed on the first attempt, not retried.
      expect(run.tasks[0]?.attempts).toBe(1);
    } finally {
      await flip();
    }
    expect((await xapi.listVms()).some((vm) => vm.name === 'damaged')).toBe(false);
    expect(simulator.pool.store.all('VDI').length).toBe(vdisBefore);
  }, 120_000);

  it('refuses a keepMacs that is not a boolean, naming it', async () => {
    const bad = await auth(lab.api().post(`/api/v1/restore-points/${pointId}/restore`))
      .send({ poolId: lab.poolId, keepMacs: 'yes' })
      .expect(400);
    expect(JSON.stringify(bad.body)).toContain('keepMacs');
  });
});
