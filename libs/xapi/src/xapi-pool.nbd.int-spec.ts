import { join } from 'node:path';
import { isNbdError } from '@haven/nbd';
import { describeIntegration, scratchDir } from '@haven/testing';
import { startXapiSimulator, type XapiSimulator } from '@haven/xapi-sim';
import { XapiPool } from './xapi-pool';
import { XapiCancelledError, XapiTransferError } from './xapi.error';

const MiB = 1024 * 1024;
const DISK_SIZE = 8 * MiB + 512 * 3; // the last block is short

describeIntegration('XapiPool reads VDIs over NBD as VDI.get_nbd_info offers them', [], () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let sim: XapiSimulator;
  let pool: XapiPool;
  let vdiRef = '';

  beforeAll(async () => {
    dir = await scratchDir('haven-xapi-nbd-');
    sim = await startXapiSimulator({
      stateDir: join(dir.path, 'state'),
      vms: 1,
      diskSize: DISK_SIZE,
      seed: 'nbd',
    });
    pool = await XapiPool.connect({ url: sim.url, username: sim.user, password: sim.password });
    vdiRef = (await pool.listVms()).find((vm) => vm.name === 'sim-vm-0')!.disks[0].vdiRef;
  });

  afterAll(async () => {
    await pool.close();
    await sim.close();
    await dir.cleanup();
  });

  it('nbdInfo gives the host, port and an export name holding this session', async () => {
    const infos = await pool.nbdInfo(vdiRef);
    expect(infos).toHaveLength(1);
    expect(infos[0]).toMatchObject({ address: '127.0.0.1', port: sim.nbd.port, cert: '', subject: '' });
    expect(infos[0].exportName).toMatch(/^\/[0-9a-f-]{36}\?session_id=OpaqueRef:/);
  });

  it('connectNbd reads the disk as it is, the short last block included', async () => {
    const client = await pool.connectNbd(vdiRef);
    expect(client).toBeDefined();
    try {
      expect(client!.size).toBe(DISK_SIZE);
      const data = Buffer.concat(
        await Promise.all(
          [0, 1, 2, 3, 4].map((block) =>
            client!.read(block * 2 * MiB, Math.min(2 * MiB, DISK_SIZE - block * 2 * MiB)),
          ),
        ),
      );
      expect(data.equals(await sim.pool.disks.get(vdiRef).read(0, DISK_SIZE))).toBe(true);
    } finally {
      await client!.close();
    }
  });

  it('connectNbd speaks TLS, pinned to the certificate XAPI gives, when the network purpose is nbd', async () => {
    const secure = await startXapiSimulator({
      stateDir: join(dir.path, 'tls'),
      vms: 1,
      diskSize: DISK_SIZE,
      seed: 'nbd',
      nbd: 'tls',
    });
    const tlsPool = await XapiPool.connect({
      url: secure.url,
      username: secure.user,
      password: secure.password,
    });
    try {
      const vdi = (await tlsPool.listVms()).find((vm) => vm.name === 'sim-vm-0')!.disks[0].vdiRef;
      const [info] = await tlsPool.nbdInfo(vdi);
      expect(info.cert).toContain('BEGIN CERTIFICATE');
      const connection = await tlsPool.connectNbd(vdi);
      try {
        expect(
          (await connection!.read(2 * MiB, 2 * MiB)).equals(
            await secure.pool.disks.get(vdi).read(2 * MiB, 2 * MiB),
          ),
        ).toBe(true);
      } finally {
        await connection!.close();
      }
    } finally {
      await tlsPool.close();
      await secure.close();
    }
  });

  it('connectNbd answers undefined when no network has an NBD purpose (nbdInfo: [])', async () => {
    sim.setNbdEnabled(false);
    try {
      expect(await pool.nbdInfo(vdiRef)).toEqual([]);
      expect(await pool.connectNbd(vdiRef)).toBeUndefined();
    } finally {
      sim.setNbdEnabled(true);
    }
  });

  it('an aborted signal stops the connection: reads fail as cancelled, the NbdError as cause', async () => {
    const controller = new AbortController();
    const client = await pool.connectNbd(vdiRef, { signal: controller.signal });
    const read = client!.read(0, 2 * MiB);
    controller.abort(new Error('stop'));
    // The read may have completed before the abort; the next one cannot.
    await read.catch(() => undefined);
    const error: unknown = await client!.read(0, 512).catch((failure: unknown) => failure);
    expect(error).toBeInstanceOf(XapiCancelledError);
    expect(isNbdError((error as Error).cause, 'NBD_ABORTED')).toBe(true);
  });

  it('a connection cut mid-read is a transfer failure (retryable) naming the pool and the VDI', async () => {
    sim.setFaults({ exportFailAfterBytes: 3 * MiB, exportFailTimes: 1 });
    try {
      const client = await pool.connectNbd(vdiRef);
      expect((await client!.read(0, 2 * MiB)).length).toBe(2 * MiB);
      // Past 3 MiB served, the host drops the connection: both reads in flight fail.
      const [second, third] = await Promise.all(
        [1, 2].map((block) => client!.read(block * 2 * MiB, 2 * MiB).catch((failure: unknown) => failure)),
      );
      for (const error of [second, third]) {
        expect(error).toBeInstanceOf(XapiTransferError);
        expect((error as XapiTransferError).message).toContain(`VDI ${vdiRef}`);
        expect((error as XapiTransferError).message).toContain('in flight');
        expect(isNbdError((error as Error).cause, 'NBD_CONNECTION_LOST')).toBe(true);
      }
      client!.destroy();
      // The fault was for one connection: the next one reads.
      const again = await pool.connectNbd(vdiRef);
      expect((await again!.read(4 * MiB, 2 * MiB)).length).toBe(2 * MiB);
      await again!.close();
    } finally {
      sim.setFaults({ exportFailAfterBytes: null, exportFailTimes: null });
    }
  });
});
