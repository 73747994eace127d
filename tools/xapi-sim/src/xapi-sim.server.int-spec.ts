import { describeIntegration, XapiSimTestServer } from '@haven/testing';
import { XenApiClientDriver } from './testing/xen-api-client.driver';

describeIntegration('xapi-sim as a separate process (XapiSimTestServer)', [], () => {
  let server: XapiSimTestServer;

  beforeAll(async () => {
    server = await XapiSimTestServer.start({ vms: 1, diskSize: '8MiB', seed: 'process' });
  });

  afterAll(async () => {
    await server.stop();
  });

  it('serves the real client, keeps written data across a SIGTERM restart, and says it closed on SIGTERM', async () => {
    const client = new XenApiClientDriver();
    await client.connect(server.url, server.user, server.password);
    const vms = await client.objects('VM');
    expect(vms.some((vm) => vm['name_label'] === 'sim-vm-0')).toBe(true);
    await client.close();
    await server.workload('POST', 'disks/sim-vm-0/write', { blocks: 2, seed: 'process' });
    const before = await server.workload<{ sha256: string }>('GET', 'disks/sim-vm-0/hash');
    await server.restart('SIGTERM');
    expect(server.output).toMatch(/xapi-sim: SIGTERM received \(pid \d+\); closing/);
    const after = await server.workload<{ sha256: string }>('GET', 'disks/sim-vm-0/hash');
    expect(after.sha256).toBe(before.sha256);
  });
});
