import { join } from 'node:path';
import { describeIntegration, scratchDir } from '@haven/testing';
import type { SlaveHostStatus } from './http/slave-host.server';
import { XenApiClientDriver } from './testing/xen-api-client.driver';
import { startXapiSimulator, type XapiSimulator } from './xapi-simulator';

const MiB = 1024 * 1024;
const SLAVE_ADDRESS = '127.0.0.2';

async function postJsonRpc(url: string, method: string, params: unknown[]): Promise<unknown> {
  const response = await fetch(`${url}/jsonrpc`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  return response.json();
}

describeIntegration('xapi-sim slave host (slaveAddress)', [], () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let sim: XapiSimulator;

  const slaveStatus = async (): Promise<SlaveHostStatus> =>
    (await (await fetch(`${sim.url}/_sim/slave`)).json()) as SlaveHostStatus;

  const diskOfFirstVm = (): string => {
    const vdi = sim.listVms().find((vm) => vm.name === 'sim-vm-0')?.disks[0]?.vdi;
    if (vdi === undefined) throw new Error('sim-vm-0 has no disk');
    return vdi;
  };

  beforeAll(async () => {
    dir = await scratchDir('haven-xapi-sim-slave-');
    sim = await startXapiSimulator({
      stateDir: join(dir.path, 'state'),
      vms: 1,
      diskSize: 4 * MiB,
      seed: 'slave-spec',
      slaveAddress: SLAVE_ADDRESS,
    });
  });

  afterAll(async () => {
    await sim.close();
    await dir.cleanup();
  });

  it("listens on the slave's address at the master's port and answers logins with HOST_IS_SLAVE [master]", async () => {
    expect(sim.slave?.url).toBe(`http://${SLAVE_ADDRESS}:${sim.port}`);
    const answer = await postJsonRpc(sim.slave?.url ?? '', 'session.login_with_password', [
      sim.user,
      sim.password,
    ]);
    expect(answer).toMatchObject({ error: { message: 'HOST_IS_SLAVE', data: [sim.host] } });
  });

  it.each(['auto', 'xml-rpc'] as const)(
    'the real client (%s) given the slave logs in on the master, which lists both hosts; transfers go to the master',
    async (transport) => {
      const before = (await slaveStatus()).requestCount;
      const client = new XenApiClientDriver();
      try {
        await client.connect(sim.slave?.url ?? '', sim.user, sim.password, transport);
        const hosts = await client.objects('host');
        expect(hosts.map((host) => [host['name_label'], host['address']]).sort()).toEqual([
          ['sim-host-1', '127.0.0.1'],
          ['sim-host-2', SLAVE_ADDRESS],
        ]);
        const [pool] = await client.objects('pool');
        expect(hosts.find((host) => host.$ref === pool['master'])?.['address']).toBe(sim.host);
        const vdi = diskOfFirstVm();
        const download = await client.getResource('/export_raw_vdi/', { vdi, format: 'raw' });
        expect(download.sha256).toBe((await sim.diskHash(vdi)).sha256);
      } finally {
        await client.close();
      }
      // Only the first login reached the slave.
      const status = await slaveStatus();
      expect(status.requestCount - before).toBe(1);
      expect(status.requests.slice(-1)).toEqual([
        {
          method: 'POST',
          path: transport === 'xml-rpc' ? '/xmlrpc' : '/jsonrpc',
          rpc: 'session.login_with_password',
        },
      ]);
    },
  );

  it('refuses every other call and transfer, failing the transfer task, and records them', async () => {
    const client = new XenApiClientDriver();
    try {
      const session = (await client.connect(sim.url, sim.user, sim.password)).sessionId;
      const slaveUrl = sim.slave?.url ?? '';
      expect(await postJsonRpc(slaveUrl, 'VM.get_all', [session])).toMatchObject({
        error: { message: 'HOST_IS_SLAVE', data: [sim.host] },
      });
      const task = await client.call<string>('task.create', 'export on the slave', '');
      const vdi = diskOfFirstVm();
      const response = await fetch(
        `${slaveUrl}/export_raw_vdi/?vdi=${vdi}&format=raw&session_id=${session}&task_id=${task}`,
      );
      expect(response.ok).toBe(false);
      expect(await response.text()).toBe(`HOST_IS_SLAVE ${sim.host}\n`);
      expect(sim.pool.store.get('task', task)).toMatchObject({
        status: 'failure',
        error_info: ['HOST_IS_SLAVE', sim.host],
      });
      const requests = (await slaveStatus()).requests.slice(-2);
      expect(requests).toEqual([
        { method: 'POST', path: '/jsonrpc', rpc: 'VM.get_all' },
        { method: 'GET', path: '/export_raw_vdi/' },
      ]);
    } finally {
      await client.close();
    }
  });

  it("serves no slave without the option, and refuses a slave address overlapping the master's", async () => {
    const stateDir = join(dir.path, 'plain');
    const plain = await startXapiSimulator({ stateDir, vms: 0, seed: 'slave-spec' });
    try {
      expect(plain.slave).toBeUndefined();
      expect(plain.pool.store.all('host')).toHaveLength(1);
      expect((await fetch(`${plain.url}/_sim/slave`)).status).toBe(404);
    } finally {
      await plain.close();
    }
    await expect(startXapiSimulator({ stateDir, slaveAddress: '127.0.0.1' })).rejects.toMatchObject({
      code: 'SIM_BAD_OPTION',
    });
    await expect(
      startXapiSimulator({ stateDir, host: '0.0.0.0', slaveAddress: SLAVE_ADDRESS }),
    ).rejects.toMatchObject({ code: 'SIM_BAD_OPTION' });
  });
});
