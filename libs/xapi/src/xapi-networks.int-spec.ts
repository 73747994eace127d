import { join } from 'node:path';
import { describeIntegration, scratchDir } from '@haven/testing';
import { startXapiSimulator, type XapiSimulator } from '@haven/xapi-sim';
import { XapiPool } from './xapi-pool';
import { XapiError } from './xapi.error';
import { recordVifs } from './vm-network.record';

describeIntegration('XapiPool networks and VIFs against the XAPI simulator', [], () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let sim: XapiSimulator;
  let pool: XapiPool;
  let session = '';

  /** A plain JSON-RPC call, for what XapiPool does not offer (creating networks). */
  const rpc = async (method: string, params: unknown[]): Promise<unknown> => {
    const response = await fetch(`${sim.url}/jsonrpc`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
    });
    const body = (await response.json()) as { result?: unknown; error?: { message: string; data: unknown } };
    if (body.error !== undefined) throw new Error(`${body.error.message} ${JSON.stringify(body.error.data)}`);
    return body.result;
  };

  beforeAll(async () => {
    dir = await scratchDir('haven-xapi-net-');
    sim = await startXapiSimulator({
      port: 0,
      stateDir: join(dir.path, 'state'),
      vms: 1,
      diskSize: 4 * 1024 * 1024,
      seed: 'xapi-networks',
      user: 'root',
      password: 'pw',
    });
    pool = await XapiPool.connect({ url: sim.url, username: 'root', password: 'pw' });
    session = (await rpc('session.login_with_password', ['root', 'pw'])) as string;
  });

  afterAll(async () => {
    await pool.close();
    await sim.close();
    await dir.cleanup();
  });

  it('lists networks, the management one marked, and records a VM interface with its MTU', async () => {
    const networks = await pool.listNetworks();
    expect(networks).toHaveLength(1);
    expect(networks[0]).toMatchObject({
      name: 'Pool-wide network associated with eth0',
      bridge: 'xenbr0',
      mtu: 1500,
      isManagement: true,
      isHostInternal: false,
    });
    const vm = (await pool.listVms())[0];
    expect(recordVifs(vm)).toEqual([
      {
        device: '0',
        mac: vm.vifs[0].mac,
        mtu: 1500,
        networkUuid: networks[0].uuid,
        networkName: 'Pool-wide network associated with eth0',
      },
    ]);
  });

  it('creates interfaces with a generated or a given MAC on a created network, and refuses a bad MAC', async () => {
    const networkRef = (await rpc('network.create', [
      session,
      { name_label: 'storage', name_description: '', MTU: 9000, other_config: {}, tags: [] },
    ])) as string;
    const storage = (await pool.listNetworks()).find((network) => network.ref === networkRef);
    expect(storage).toMatchObject({ name: 'storage', mtu: 9000, isManagement: false });
    const vm = await pool.createVm({ name: 'with interfaces', record: {} });

    const generated = await pool.createVif(vm.ref, { device: '0', networkRef, mtu: 9000 });
    expect(generated).toMatchObject({
      device: '0',
      networkUuid: storage!.uuid,
      networkName: 'storage',
      mtu: 9000,
    });
    expect(generated.mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    const given = await pool.createVif(vm.ref, {
      device: '1',
      networkRef,
      mtu: 9000,
      mac: '02:aa:bb:cc:dd:ee',
    });
    expect(given.mac).toBe('02:aa:bb:cc:dd:ee');
    const read = await pool.getVm(vm.uuid);
    expect(read.vifs.map((vif) => [vif.device, vif.mac, vif.networkName])).toEqual([
      ['0', generated.mac, 'storage'],
      ['1', '02:aa:bb:cc:dd:ee', 'storage'],
    ]);

    const badMac = await pool
      .createVif(vm.ref, { device: '2', networkRef, mtu: 1500, mac: 'not-a-mac' })
      .catch((error: unknown) => error);
    expect(badMac).toBeInstanceOf(XapiError);
    expect((badMac as XapiError).message).toContain('MAC_INVALID');
    const taken = await pool
      .createVif(vm.ref, { device: '1', networkRef, mtu: 1500 })
      .catch((error: unknown) => error);
    expect((taken as XapiError).message).toContain('DEVICE_ALREADY_EXISTS');

    // A network with interfaces cannot go, as on XAPI; once the VM is gone it can.
    await expect(rpc('network.destroy', [session, networkRef])).rejects.toThrow('NETWORK_CONTAINS_VIF');
    await pool.destroyVm(vm.ref);
    await rpc('network.destroy', [session, networkRef]);
    expect((await pool.listNetworks()).map((network) => network.name)).toEqual([
      'Pool-wide network associated with eth0',
    ]);
  });
});
