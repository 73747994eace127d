import type { AddressInfo } from 'node:net';
import {
  NbdConnectionDrop,
  NbdExportRefusal,
  NbdServer,
  createSelfSignedCertificate,
  type NbdExport,
  type NbdServerStats,
  type SelfSignedCertificate,
} from '@haven/nbd';
import type { SimulatedPool } from '../model/simulated-pool';
import { fieldText, type XapiStruct } from '../rpc/xapi-value';
import { XapiFailure } from '../xapi.failure';

/** Network purposes that make XAPI serve VDIs over NBD: `nbd` with TLS, `insecure_nbd` without. */
export const NBD_PURPOSES = ['nbd', 'insecure_nbd'] as const;

/** The subject of the simulator's TLS certificate (what `get_nbd_info` names for the client to check). */
export const NBD_TLS_SUBJECT = 'xapi-sim.pool.test';

export interface VdiNbdStatus extends NbdServerStats {
  /** Some network of the pool has an NBD purpose: `VDI.get_nbd_info` answers a connection. */
  enabled: boolean;
  port: number;
  tls: boolean;
}

/**
 * The host's NBD side, as XAPI runs it: export names `/<vdi-uuid>?session_id=<session ref>`, served
 * only to a logged-in session, reading the VDI's content as it is (a backup reads a snapshot,
 * which nothing writes). TLS (`nbd` purpose) when started with a certificate, plain (`insecure_nbd`)
 * otherwise.
 */
export class VdiNbdServer {
  private readonly server: NbdServer;
  private address: AddressInfo | undefined;

  private constructor(
    private readonly pool: SimulatedPool,
    private readonly host: string,
    private readonly certificate: SelfSignedCertificate | undefined,
  ) {
    this.server = new NbdServer({
      openExport: (name) => this.openExport(name),
      onListenerError: (error) => {
        process.stderr.write(
          `xapi-sim: NBD listener on ${this.host}:${this.port} failed: ${String(error)}\n`,
        );
      },
      ...(certificate === undefined ? {} : { tls: { key: certificate.key, cert: certificate.cert } }),
    });
  }

  static async create(pool: SimulatedPool, host: string, tls: boolean): Promise<VdiNbdServer> {
    return new VdiNbdServer(pool, host, tls ? await createSelfSignedCertificate(NBD_TLS_SUBJECT) : undefined);
  }

  async listen(port: number): Promise<number> {
    this.address = await this.server.listen(port, this.host);
    return this.address.port;
  }

  get port(): number {
    return this.address?.port ?? 0;
  }

  get tls(): boolean {
    return this.certificate !== undefined;
  }

  /** Whether a network of the pool has the NBD purpose (XAPI answers `get_nbd_info` with [] otherwise). */
  get enabled(): boolean {
    return this.pool.store.all('network').some((network) => {
      const purpose = network.record['purpose'];
      return Array.isArray(purpose) && purpose.some((value) => NBD_PURPOSES.some((nbd) => nbd === value));
    });
  }

  /** Sets or clears the NBD purpose on every network of the pool. */
  setEnabled(enabled: boolean): void {
    const purpose = this.tls ? 'nbd' : 'insecure_nbd';
    for (const network of this.pool.store.all('network')) {
      this.pool.store.update('network', network.ref, (fields) => {
        const current = Array.isArray(fields['purpose'])
          ? fields['purpose'].filter((value) => typeof value === 'string')
          : [];
        const others = current.filter((value) => !NBD_PURPOSES.some((nbd) => nbd === value));
        fields['purpose'] = enabled ? [...others, purpose] : others;
      });
    }
  }

  status(): VdiNbdStatus {
    return { enabled: this.enabled, port: this.port, tls: this.tls, ...this.server.stats };
  }

  /** `VDI.get_nbd_info`: one record per host serving the VDI, none when no network has NBD. */
  connectionInfo(session: string, vdi: string): XapiStruct[] {
    if (!this.enabled || this.address === undefined) return [];
    const uuid = fieldText(this.pool.store.get('VDI', vdi), 'uuid');
    // Bound to every interface: name the master host's address, as XAPI names a PIF's.
    const wildcard = this.address.address === '0.0.0.0' || this.address.address === '::';
    const master = this.pool.store.has('host', this.pool.masterHost)
      ? fieldText(this.pool.store.get('host', this.pool.masterHost), 'address')
      : '';
    return [
      {
        address: wildcard && master !== '' ? master : this.address.address,
        port: this.address.port,
        exportname: `/${uuid}?session_id=${session}`,
        cert: this.certificate?.cert ?? '',
        subject: this.certificate?.subject ?? '',
      },
    ];
  }

  close(): Promise<void> {
    return this.server.close();
  }

  private openExport(name: string): NbdExport {
    const match = /^\/([0-9a-f-]{36})\?session_id=(.+)$/i.exec(name);
    if (match === null) throw new NbdExportRefusal('export names are /<vdi-uuid>?session_id=<session ref>');
    const [, uuid = '', session = ''] = match;
    if (this.pool.faults.unreachable) throw new NbdExportRefusal('the host is unreachable');
    if (!this.enabled) throw new NbdExportRefusal('no network of the pool has the nbd purpose');
    try {
      this.pool.checkSession(session);
    } catch {
      // The message reaches the client's logs: it must not repeat the session reference.
      throw new NbdExportRefusal('SESSION_INVALID: the session of the export name is not logged in');
    }
    let vdi: string;
    try {
      vdi = this.pool.store.resolve('VDI', uuid);
    } catch (error) {
      if (error instanceof XapiFailure) throw new NbdExportRefusal(`${error.code}: no VDI ${uuid}`);
      throw error;
    }
    if (this.pool.store.get('VDI', vdi)['type'] === 'cbt_metadata') {
      throw new NbdExportRefusal(`VDI ${uuid} holds only changed-block metadata (data destroyed)`);
    }
    const disk = this.pool.disks.get(vdi);
    // The export faults apply to NBD connections too: one that breaks drops after that many bytes.
    const faults = this.pool.faults;
    let failAfter: number | null = null;
    if (faults.exportFailAfterBytes !== null && faults.exportFailTimes !== 0) {
      failAfter = faults.exportFailAfterBytes;
      if (faults.exportFailTimes !== null) faults.exportFailTimes--;
    }
    let served = 0;
    return {
      size: disk.virtualSize,
      read: (offset, length) => {
        if (failAfter !== null && served + length > failAfter) {
          return Promise.reject(
            new NbdConnectionDrop(`export interrupted after ${failAfter} bytes (injected fault)`),
          );
        }
        served += length;
        return disk.read(offset, length);
      },
    };
  }
}
