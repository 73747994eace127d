import { join } from 'node:path';
import { NbdClient } from '@haven/nbd';
import { describeIntegration } from '@haven/testing';
import { XenApiClientDriver } from '../testing/xen-api-client.driver';
import { startXapiSimulator, type XapiSimulator } from '../xapi-simulator';
import { fieldText } from '../rpc/xapi-value';
import { NBD_TLS_SUBJECT } from './vdi-nbd.server';
import { startSimulatorClientLab, type SimulatorClientLab } from '../testing/simulator-client.lab';
import { nbdRejection } from '@haven/nbd/testing';

const MiB = 1024 * 1024;

interface NbdInfo {
  address: string;
  port: number;
  exportname: string;
  cert: string;
  subject: string;
}

describeIntegration('the simulator serves VDIs over NBD as VDI.get_nbd_info says', [], () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let sim: XapiSimulator;
  let client: XenApiClientDriver;
  // 3 blocks and 1 KiB: the last block is short
  const size = 6 * MiB + 1024;

  const firstDisk = (simulator: XapiSimulator): { vdi: string; uuid: string } => {
    const vdi = simulator.listVms().find((vm) => vm.name === 'sim-vm-0')!.disks[0].vdi;
    return { vdi, uuid: fieldText(simulator.pool.store.get('VDI', vdi), 'uuid') };
  };

  let lab: SimulatorClientLab;

  beforeAll(async () => {
    lab = await startSimulatorClientLab({
      scratchPrefix: 'haven-sim-nbd-',
      stateFolder: 'plain',
      vms: 1,
      diskSize: size,
      seed: 'nbd',
    });
    ({ dir, sim, client } = lab);
  });

  afterAll(() => lab.close());

  it('answers one plain connection per VDI, and the export reads as the disk', async () => {
    const { vdi, uuid } = firstDisk(sim);
    const infos = await client.call<NbdInfo[]>('VDI.get_nbd_info', vdi);
    expect(infos).toHaveLength(1);
    const [info] = infos as [NbdInfo];
    expect(info).toEqual({
      address: '127.0.0.1',
      port: sim.nbd.port,
      exportname: expect.stringMatching(new RegExp(`^/${uuid}\\?session_id=OpaqueRef:`)),
      cert: '',
      subject: '',
    });
    const before = sim.nbd.status().reads;
    const nbd = await NbdClient.connect({ host: info.address, port: info.port, exportName: info.exportname });
    try {
      expect(nbd.size).toBe(size);
      const disk = sim.pool.disks.get(vdi);
      const reads = [0, 1, 2, 3].map((block) =>
        nbd.read(block * 2 * MiB, Math.min(2 * MiB, size - block * 2 * MiB)),
      );
      const data = Buffer.concat(await Promise.all(reads));
      expect(data.equals(await disk.read(0, size))).toBe(true);
    } finally {
      await nbd.close();
    }
    const status = (await (await fetch(`${sim.url}/_sim/nbd`)).json()) as { reads: number; enabled: boolean };
    expect(status.enabled).toBe(true);
    expect(status.reads).toBe(before + 4);
  });

  it('refuses an export name whose session is not logged in, or whose VDI does not exist', async () => {
    const { vdi } = firstDisk(sim);
    const [info] = await client.call<NbdInfo[]>('VDI.get_nbd_info', vdi);
    const name = info.exportname.replace(/session_id=.*$/, 'session_id=OpaqueRef:forged-session');
    const forged = await nbdRejection(
      NbdClient.connect({ host: info.address, port: info.port, exportName: name }),
    );
    expect(forged.code).toBe('NBD_EXPORT_UNKNOWN');
    expect(forged.message).toContain('SESSION_INVALID');
    expect(forged.message).not.toContain('forged-session');

    const missing = info.exportname.replace(/^\/[^?]+/, '/00000000-0000-4000-8000-000000000000');
    const unknown = await nbdRejection(
      NbdClient.connect({ host: info.address, port: info.port, exportName: missing }),
    );
    expect(unknown.code).toBe('NBD_EXPORT_UNKNOWN');
    expect(unknown.message).toContain('no VDI 00000000-0000-4000-8000-000000000000');
  });

  it('answers [] once no network has an NBD purpose, as XAPI does, and serves again when one has', async () => {
    const { vdi } = firstDisk(sim);
    const [network] = await client.objects('network');
    await client.call('network.remove_purpose', network.$ref, 'insecure_nbd');
    try {
      expect(await client.call('VDI.get_nbd_info', vdi)).toEqual([]);
      expect(sim.nbd.status().enabled).toBe(false);
    } finally {
      const response = await fetch(`${sim.url}/_sim/nbd`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ enabled: true }),
      });
      expect(((await response.json()) as { enabled: boolean }).enabled).toBe(true);
    }
    expect(await client.call('VDI.get_nbd_info', vdi)).toHaveLength(1);
  });

  it('serves TLS with a certificate for the subject it names when started with nbd: tls', async () => {
    const secure = await startXapiSimulator({
      stateDir: join(dir.path, 'tls'),
      vms: 1,
      diskSize: size,
      seed: 'nbd',
      nbd: 'tls',
    });
    const tlsClient = new XenApiClientDriver();
    try {
      await tlsClient.connect(secure.url, secure.user, secure.password);
      const { vdi } = firstDisk(secure);
      const [info] = await tlsClient.call<NbdInfo[]>('VDI.get_nbd_info', vdi);
      expect(info.subject).toBe(NBD_TLS_SUBJECT);
      expect(info.cert).toContain('BEGIN CERTIFICATE');
      const nbd = await NbdClient.connect({
        host: info.address,
        port: info.port,
        exportName: info.exportname,
        tls: { cert: info.cert, servername: info.subject },
      });
      try {
        expect(
          (await nbd.read(2 * MiB, 2 * MiB)).equals(await secure.pool.disks.get(vdi).read(2 * MiB, 2 * MiB)),
        ).toBe(true);
      } finally {
        await nbd.close();
      }
      const plain = await nbdRejection(
        NbdClient.connect({ host: info.address, port: info.port, exportName: info.exportname }),
      );
      expect(plain.code).toBe('NBD_TLS_FAILED');
    } finally {
      await tlsClient.close();
      await secure.close();
    }
    // The NBD listener closes with the simulator.
    const closed = await nbdRejection(
      NbdClient.connect({ host: '127.0.0.1', port: secure.nbd.port, exportName: '/x?session_id=y' }),
    );
    expect(closed.code).toBe('NBD_CONNECT_FAILED');
  });

  it("names the master host's address when listening on every interface", async () => {
    const wide = await startXapiSimulator({
      stateDir: join(dir.path, 'wide'),
      vms: 1,
      diskSize: size,
      host: '0.0.0.0',
    });
    const wideClient = new XenApiClientDriver();
    try {
      await wideClient.connect(`http://127.0.0.1:${wide.port}`, wide.user, wide.password);
      const [info] = await wideClient.call<NbdInfo[]>('VDI.get_nbd_info', firstDisk(wide).vdi);
      expect([info.address, info.port]).toEqual(['127.0.0.1', wide.nbd.port]);
    } finally {
      await wideClient.close();
      await wide.close();
    }
  });

  it('starts without the NBD purpose with nbd: off', async () => {
    const off = await startXapiSimulator({
      stateDir: join(dir.path, 'off'),
      vms: 1,
      diskSize: size,
      nbd: 'off',
    });
    const offClient = new XenApiClientDriver();
    try {
      await offClient.connect(off.url, off.user, off.password);
      expect(await offClient.call('VDI.get_nbd_info', firstDisk(off).vdi)).toEqual([]);
    } finally {
      await offClient.close();
      await off.close();
    }
  });
});
