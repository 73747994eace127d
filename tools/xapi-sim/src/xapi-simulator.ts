import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { registerStorageMethods } from './api/storage.methods';
import { registerToolstackMethods } from './api/toolstack.methods';
import { registerVmMethods } from './api/vm.methods';
import { genericMethod } from './api/generic.methods';
import { exportVm } from './http/export-vm.handler';
import { importVm } from './http/import-vm.handler';
import { SlaveHostServer } from './http/slave-host.server';
import { createXapiHttpServer } from './http/xapi-http.server';
import type { VdiExportRecord } from './model/export.log';
import { SimulatedPool, type PoolFaults } from './model/simulated-pool';
import { VdiNbdServer, type VdiNbdStatus } from './nbd/vdi-nbd.server';
import type { ClockState } from './model/simulator.clock';
import { MethodTable } from './rpc/method.table';
import { RpcDispatcher } from './rpc/rpc.dispatcher';
import { seedPool, seedSlaveHost } from './seed/pool.seed';
import { BLOCK_SIZE } from './storage/block.constants';
import {
  DiskWorkload,
  type DiskHash,
  type RandomWrite,
  type VmSummary,
  type WriteResult,
} from './workload/disk.workload';
import { SimulatorError } from './xapi.failure';

export interface XapiSimulatorOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  host?: string;
  /** Folder holding the pool's state and disk blocks; reopened as is on restart. */
  stateDir: string;
  /** Seed of the first start: object identities and disk content derive from it. */
  seed?: string;
  /** VMs created on the first start (default 2). */
  vms?: number;
  /** Disk size of those VMs in bytes (default 64 MiB; a multiple of 512). */
  diskSize?: number;
  /** Fraction of seeded disk blocks holding data (default 0.6). */
  allocation?: number;
  /** Capacity of each SR in bytes (default 4 TiB). */
  srSize?: number;
  user?: string;
  password?: string;
  /**
   * NBD on the first start: `insecure` (default) gives the pool network the `insecure_nbd` purpose
   * (plain NBD), `tls` the `nbd` purpose (TLS with a self-signed certificate, made with `openssl`),
   * `off` no NBD purpose (`VDI.get_nbd_info` answers [], as XAPI does). Reopened state keeps its
   * purposes; `tls` also decides whether the listener speaks TLS.
   */
  nbd?: 'insecure' | 'tls' | 'off';
  /** TCP port of the NBD listener; 0 (default) picks a free port. */
  nbdPort?: number;
  /**
   * Also serve a second host of the pool, a slave, on this address (e.g. `127.0.0.2`) at the
   * master's port: its logins answer `HOST_IS_SLAVE [host]`, and the xen-api client, which swaps
   * only the hostname of its URL, follows to the master. Everything it receives is refused and
   * recorded (`slave.status()`, `GET /_sim/slave`).
   */
  slaveAddress?: string;
}

export interface XapiSimulator {
  /** `http://host:port`, what `createClient({ url })` takes. */
  readonly url: string;
  readonly port: number;
  readonly host: string;
  readonly stateDir: string;
  readonly user: string;
  readonly password: string;
  /** The pool model, for assertions beyond the workload API. */
  readonly pool: SimulatedPool;
  readonly workload: DiskWorkload;
  /** The NBD listener: its port and counters (reads served…). */
  readonly nbd: VdiNbdServer;
  /** The slave host's listener when started with `slaveAddress`: its URL and what it received. */
  readonly slave: SlaveHostServer | undefined;
  listVms(): VmSummary[];
  /** Random writes into a disk: `target` is a VDI ref/uuid or a VM name/ref/uuid (+ disk position). */
  writeRandom(target: string, request: RandomWrite, position?: number): Promise<WriteResult>;
  overwriteDisk(
    target: string,
    image: AsyncIterable<Buffer> | Buffer | string,
    position?: number,
  ): Promise<{ vdi: string; bytes: number }>;
  diskHash(target: string, options?: { blocks?: boolean }, position?: number): Promise<DiskHash>;
  setFaults(faults: Partial<PoolFaults>): PoolFaults;
  /**
   * Disk exports served after sequence number `since` (default: every one kept), oldest first;
   * `exports().at(-1)?.sequence` marks where a test starts counting. Also `GET /_sim/exports`.
   */
  exports(since?: number): VdiExportRecord[];
  setSrSize(sr: string, bytes: number): void;
  /**
   * Sets the pool's time (snapshot times) to run on from `at`, or to stand still there when
   * `frozen`; null: back to the real time.
   */
  setClock(at: Date | null, options?: { frozen?: boolean }): ClockState;
  /** Sets or clears the NBD purpose of the pool's networks (`VDI.get_nbd_info` answers [] when off). */
  setNbdEnabled(enabled: boolean): VdiNbdStatus;
  /** Writes the state folder now (it is also written shortly after every change). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

const MiB = 1024 * 1024;

function checkOptions(options: XapiSimulatorOptions): void {
  const diskSize = options.diskSize ?? 64 * MiB;
  if (!Number.isSafeInteger(diskSize) || diskSize <= 0 || diskSize % 512 !== 0) {
    throw new SimulatorError(
      'SIM_BAD_OPTION',
      `diskSize ${diskSize} must be a positive multiple of 512 bytes`,
    );
  }
  const allocation = options.allocation ?? 0.6;
  if (!(allocation >= 0 && allocation <= 1)) {
    throw new SimulatorError('SIM_BAD_OPTION', `allocation ${allocation} must be between 0 and 1`);
  }
  const vms = options.vms ?? 2;
  if (!Number.isSafeInteger(vms) || vms < 0)
    throw new SimulatorError('SIM_BAD_OPTION', `vms ${vms} must be a non-negative integer`);
  const host = options.host ?? '127.0.0.1';
  const slave = options.slaveAddress;
  // The slave shares the master's port on another address: a wildcard on either side would overlap.
  if (slave !== undefined && (slave === host || isWildcard(slave) || isWildcard(host))) {
    throw new SimulatorError(
      'SIM_BAD_OPTION',
      `slaveAddress ${slave} must be a specific address other than the master's host ${host} (e.g. 127.0.0.2)`,
    );
  }
}

function isWildcard(address: string): boolean {
  return address === '' || address === '0.0.0.0' || address === '::' || address === '[::]';
}

/** Logs an error a listener meets after it started (a failed accept…) instead of crashing unseen. */
function logListenerError(server: Server, what: string): void {
  server.on('error', (error) => {
    process.stderr.write(`xapi-sim: ${what} failed: ${String(error)}\n`);
  });
}

/** Starts a simulated XAPI pool master on HTTP; the real `xen-api` client drives it unmodified. */
export async function startXapiSimulator(options: XapiSimulatorOptions): Promise<XapiSimulator> {
  checkOptions(options);
  const seed = options.seed ?? 'haven';
  const user = options.user ?? 'root';
  const password = options.password ?? 'password';
  const nbdMode = options.nbd ?? 'insecure';
  const pool = await SimulatedPool.open({ stateDir: options.stateDir, seed, user, password }, (fresh) =>
    seedPool(fresh, {
      seed,
      vms: options.vms ?? 2,
      diskSize: options.diskSize ?? 64 * MiB,
      allocation: options.allocation ?? 0.6,
      srSize: options.srSize ?? 4 * 1024 ** 4,
      networkPurpose: nbdMode === 'off' ? [] : [nbdMode === 'tls' ? 'nbd' : 'insecure_nbd'],
    }),
  );
  const host = options.host ?? '127.0.0.1';
  let nbd: VdiNbdServer;
  try {
    nbd = await VdiNbdServer.create(pool, host, nbdMode === 'tls');
    await nbd.listen(options.nbdPort ?? 0);
  } catch (error) {
    await pool.close();
    throw error;
  }
  const closing = new AbortController();
  const table = new MethodTable();
  registerToolstackMethods(table, pool, closing.signal);
  registerVmMethods(table, pool);
  registerStorageMethods(table, pool, nbd);
  table.fallback = (method) =>
    genericMethod(pool, method, (cls, ref, field) => {
      if (cls === 'VM' && field === 'blocked_operations') pool.refreshVmOperations(ref);
    });
  const dispatcher = new RpcDispatcher(table, pool);
  const workload = new DiskWorkload(pool);
  let slave: SlaveHostServer | undefined;
  const { server, sockets } = createXapiHttpServer({
    pool,
    dispatcher,
    workload,
    nbd,
    slave: () => slave?.status(),
    transfers: { 'GET /export': exportVm, 'PUT /import': importVm },
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    await nbd.close();
    await pool.close();
    throw error;
  }
  const port = (server.address() as AddressInfo).port;
  logListenerError(server, `HTTP listener on ${host}:${port}`);
  if (options.slaveAddress !== undefined) {
    slave = new SlaveHostServer(pool, seedSlaveHost(pool, options.slaveAddress), options.slaveAddress, host);
    try {
      await slave.listen(port);
    } catch (error) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await nbd.close();
      await pool.close();
      throw error;
    }
  }
  let closed: Promise<void> | undefined;

  return {
    url: `http://${host}:${port}`,
    port,
    host,
    stateDir: options.stateDir,
    user,
    password,
    pool,
    workload,
    nbd,
    slave,
    listVms: () => workload.listVms(),
    writeRandom: (target, request, position) => workload.writeRandom(target, request, position),
    overwriteDisk: (target, image, position) => workload.overwrite(target, image, position),
    diskHash: (target, hashOptions, position) => workload.hash(target, hashOptions, position),
    setFaults: (faults) => workload.setFaults(faults),
    exports: (since) => pool.exports.since(since),
    setSrSize: (sr, bytes) => workload.setSrSize(sr, bytes),
    setClock: (at, options) => pool.clock.set(at, options),
    setNbdEnabled: (enabled) => {
      nbd.setEnabled(enabled);
      return nbd.status();
    },
    flush: () => pool.flush(),
    close: () => {
      closed ??= (async () => {
        // Pending event.from long polls answer at once; then connections go.
        closing.abort();
        await new Promise((resolve) => setImmediate(resolve));
        await nbd.close();
        await slave?.close();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          for (const socket of sockets) socket.destroySoon();
          setTimeout(() => {
            for (const socket of sockets) socket.destroy();
          }, 200).unref();
        });
        await pool.close();
      })();
      return closed;
    },
  };
}

export { BLOCK_SIZE };
