import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describeIntegration, XapiSimTestServer } from '@haven/testing';
import { createRawStreamFromVhdStream } from '@haven/vhd';
import { XapiPool } from './xapi-pool';
import type { SnapshotInfo } from './xapi-inventory.model';

const MiB = 1024 * 1024;

async function sha256Of(stream: AsyncIterable<Buffer | Uint8Array>): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk);
  return hash.digest('hex');
}

interface SlaveRequests {
  masterAddress: string;
  requests: { method: string; path: string; rpc?: string }[];
  requestCount: number;
}

// A pool given by one of its slaves: XAPI answers the login with HOST_IS_SLAVE, the xen-api
// client moves to the master, and every transfer must go there too (a slave refuses them here).
describeIntegration('XapiPool given a slave host of the pool (simulator process)', [], () => {
  let server: XapiSimTestServer;
  let pool: XapiPool;
  let snapshot: SnapshotInfo;

  const diskHash = async (vdiRef: string): Promise<string> =>
    (await server.workload<{ sha256: string }>('GET', `disks/${encodeURIComponent(vdiRef)}/hash`)).sha256;

  beforeAll(async () => {
    server = await XapiSimTestServer.start({
      vms: 1,
      diskSize: '10MiB',
      seed: 'xapi-slave',
      slaveAddress: '127.0.0.2',
    });
    pool = await XapiPool.connect({
      url: server.slaveUrl,
      username: server.user,
      password: server.password,
    });
    const vm = (await pool.listVms()).find((candidate) => candidate.name === 'sim-vm-0');
    if (vm === undefined) throw new Error('the simulator has no VM sim-vm-0');
    snapshot = await pool.snapshotVm(vm, { name: 'slave-spec' });
  });

  afterAll(async () => {
    await pool.close();
    await server.stop();
  });

  it('logs in on the master after the slave answered HOST_IS_SLAVE', async () => {
    expect(new URL(server.slaveUrl).hostname).toBe('127.0.0.2');
    expect(pool.url).toBe(server.slaveUrl);
    expect(pool.poolName).toBe('Simulated pool');
    const slave = await server.workload<SlaveRequests>('GET', 'slave');
    expect(slave.masterAddress).toBe(new URL(server.url).hostname);
    expect(slave.requests).toEqual([
      { method: 'POST', path: '/jsonrpc', rpc: 'session.login_with_password' },
    ]);
  });

  it('exports (VHD and raw) and imports on the master, byte-equal, and sends nothing to the slave', async () => {
    const vdiRef = snapshot.disks[0]?.vdiRef ?? '';
    const expected = await diskHash(vdiRef);
    expect(await sha256Of(createRawStreamFromVhdStream(await pool.exportVhd(vdiRef)))).toBe(expected);
    expect(await sha256Of(await pool.exportRaw(vdiRef))).toBe(expected);

    const sr = (await pool.listSrs()).find((candidate) => candidate.name === 'Local storage');
    const image = randomBytes(4 * MiB);
    const target = await pool.createVdi({
      srUuid: sr?.uuid ?? '',
      name: 'slave-import',
      virtualSize: image.length,
    });
    await pool.importVdi(target.ref, Readable.from([image]), { format: 'raw', length: image.length });
    expect(await sha256Of(await pool.exportRaw(target.ref))).toBe(
      createHash('sha256').update(image).digest('hex'),
    );

    const slave = await server.workload<SlaveRequests>('GET', 'slave');
    expect(slave.requestCount).toBe(1);
    expect(slave.requests.map((request) => request.rpc ?? request.path)).toEqual([
      'session.login_with_password',
    ]);
  });
});
