import type { Readable } from 'node:stream';
import { NbdClient, isNbdError } from '@haven/nbd';
import { VdiNbdConnection, nbdFailure } from './vdi-nbd.connection';
import {
  HAVEN_MANAGED_KEY,
  isNullRef,
  numberField,
  parseXapiDate,
  positionOf,
  powerStateOf,
  refList,
  stringField,
  stringMap,
  type DiskInfo,
  type NetworkInfo,
  type SnapshotInfo,
  type SrInfo,
  type VdiInfo,
  type VifInfo,
  type VmInfo,
  type XapiRecord,
} from './xapi-inventory.model';
import { XapiExportStream } from './xapi-export.stream';
import { openHttpDownload } from './http/http-download';
import { XapiError, XapiMarkerHeldError, toXapiError, xapiError } from './xapi.error';
import { loadXenApi, type CancelTokenLike, type XenApiClient } from './xen-api.loader';
import { decodeVmMarker, encodeVmMarker, markerKey, type VmMarker } from './vm-marker.codec';

export interface XapiPoolOptions {
  /** `https://master-address` (or `http://` for the simulator). */
  url: string;
  username: string;
  password: string;
  /** Accept a self-signed host certificate (XCP-ng's default). */
  allowUnauthorized?: boolean;
  /** Timeout of each plain call and of HTTP inactivity (default 60 s). */
  callTimeoutMs?: number;
  /** `auto` (default) tries JSON-RPC and falls back to XML-RPC, which old XenServer hosts only speak. */
  transport?: 'auto' | 'json-rpc' | 'xml-rpc';
  /** Longest wait for an `Async.*` task (snapshot, VM.create, CBT…) before it is cancelled (default 1 h). */
  taskTimeoutMs?: number;
  /**
   * Pause of the client's event loop between two `event.from` calls (the client's `debounce`).
   * A task's end is learnt only from that loop, so each `Async.*` call or transfer waits up to
   * this long more. Default DEFAULT_EVENT_DEBOUNCE_MS (10), not the client's 200: see there.
   */
  eventDebounceMs?: number;
}

/**
 * The classes the client follows through `event.from` and keeps records of: tasks (each `Async.*`
 * call and transfer is waited for through its task's events) and the pool (`client.pool`, whose
 * `other_config` names a backup network). Haven reads every other record when it needs it. The
 * client's default follows every class: on a large pool that is a cached copy of every VM, disk,
 * metrics and guest-metrics record in each worker, and an `event.from` answer for every change of
 * any of them, which Haven never reads.
 */
const WATCHED_CLASSES: readonly string[] = ['task', 'pool'];

/**
 * Haven's pause between two `event.from` calls, which is how long a task's end may wait to be
 * learnt. The client's own default (200 ms) made up most of an incremental backup of a small
 * change: four task waits per VM (snapshot, export, two destroys), 0.82 s of which 0.64 s was that
 * pause on the 1 GiB bench (0.27 s at 50 ms; docs/benchmarks/jobs.md). At 10 ms a snapshot and its
 * removal take ~25 and ~12 ms on the simulator against ~65 and ~40 ms at 50 ms (session 16).
 * Since only tasks and the pool are followed (WATCHED_CLASSES), `event.from` answers only when one
 * of those changes: an idle pool is not asked more often (the call blocks on the host until there
 * are events), and a pool whose tasks change all the time is asked at most 100 times a second per
 * connection, each answer carrying the task events since the last.
 */
export const DEFAULT_EVENT_DEBOUNCE_MS = 10;

/**
 * Haven's wait after a failed `event.from` before the client asks again (the client's own default
 * is a minute). Tasks end only through that loop, so after a blip of the pool's connection (one
 * dropped request) every snapshot, export and destroy in flight waited up to a minute more; a
 * pool that stays down is asked every 5 s, one small call.
 */
export const EVENT_RETRY_DELAY_MS = 5_000;

export type XvaCompression = 'none' | 'gzip' | 'zstd';

/** One way to read a VDI over NBD (a record of `VDI.get_nbd_info`). */
export interface VdiNbdInfo {
  address: string;
  port: number;
  /** `/<vdi-uuid>?session_id=<session ref>`: holds a session, never log it. */
  exportName: string;
  /** The host's TLS certificate (PEM); empty for plain NBD (`insecure_nbd`). */
  cert: string;
  /** The name the certificate is issued for. */
  subject: string;
}
export type OtherConfigClass = 'VM' | 'VDI';

/** VM.create fields a restore may copy from a manifest's VM record; everything else is runtime state. */
const VM_CREATE_FIELDS = [
  'name_description',
  'user_version',
  'is_a_template',
  'affinity',
  'memory_target',
  'memory_static_max',
  'memory_dynamic_max',
  'memory_dynamic_min',
  'memory_static_min',
  'VCPUs_params',
  'VCPUs_max',
  'VCPUs_at_startup',
  'actions_after_shutdown',
  'actions_after_reboot',
  'actions_after_crash',
  'PV_bootloader',
  'PV_kernel',
  'PV_ramdisk',
  'PV_args',
  'PV_bootloader_args',
  'PV_legacy_args',
  'HVM_boot_policy',
  'HVM_boot_params',
  'HVM_shadow_multiplier',
  'platform',
  'PCI_bus',
  'recommendations',
  'xenstore_data',
  'ha_always_run',
  'ha_restart_priority',
  'has_vendor_device',
  'hardware_platform_version',
  'domain_type',
] as const;

/** Defaults XAPI requires in VM.create when the manifest lacks them. */
const VM_CREATE_DEFAULTS: XapiRecord = {
  name_description: '',
  user_version: 1,
  is_a_template: false,
  affinity: 'OpaqueRef:NULL',
  memory_static_max: 1024 ** 3,
  memory_dynamic_max: 1024 ** 3,
  memory_dynamic_min: 1024 ** 3,
  memory_static_min: 1024 ** 3,
  VCPUs_params: {},
  VCPUs_max: 1,
  VCPUs_at_startup: 1,
  actions_after_shutdown: 'destroy',
  actions_after_reboot: 'restart',
  actions_after_crash: 'restart',
  PV_bootloader: '',
  PV_kernel: '',
  PV_ramdisk: '',
  PV_args: '',
  PV_bootloader_args: '',
  PV_legacy_args: '',
  HVM_boot_policy: 'BIOS order',
  HVM_boot_params: { order: 'cd' },
  platform: {},
  PCI_bus: '',
  recommendations: '',
};

/**
 * One connection to a XCP-ng / XenServer pool through the real `xen-api` client. Methods speak in
 * Haven's terms (VMs, disks, snapshots, SRs), map every failure to a typed XapiError naming the
 * pool and the object, and return transfers as back-pressured streams bound to their XAPI task.
 */
export class XapiPool {
  private closed = false;

  private constructor(
    private readonly client: XenApiClient,
    private readonly cancelTokens: ReturnType<typeof loadXenApi>['promiseToolbox']['CancelToken'],
    /** The URL as given, credentials stripped: safe in messages. */
    readonly url: string,
    readonly poolUuid: string,
    readonly poolName: string,
    private readonly callTimeoutMs: number,
    private readonly taskTimeoutMs: number,
    /** Where exports are read from directly (the pool's URL), and whether its certificate may be self-signed. */
    private readonly downloads: { origin: URL | undefined; allowUnauthorized: boolean },
  ) {}

  static async connect(options: XapiPoolOptions, signal?: AbortSignal): Promise<XapiPool> {
    const url = safeUrl(options.url);
    const callTimeoutMs = options.callTimeoutMs ?? 60_000;
    const { xenApi, promiseToolbox } = loadXenApi();
    const client = xenApi.createClient({
      url: options.url,
      auth: { user: options.username, password: options.password },
      allowUnauthorized: options.allowUnauthorized ?? false,
      callTimeout: callTimeoutMs,
      httpInactivityTimeout: callTimeoutMs,
      syncStackTraces: false,
      transport: options.transport ?? 'auto',
      debounce: options.eventDebounceMs ?? DEFAULT_EVENT_DEBOUNCE_MS,
      eventPollDelay: EVENT_RETRY_DELAY_MS,
      watchEvents: WATCHED_CLASSES,
    });
    const context = { poolUrl: url, operation: 'login', object: `user "${options.username}"` };
    try {
      signal?.throwIfAborted();
      await raceAbort(client.connect(), signal);
      // Tasks (Async.* calls, transfers) are followed through the event stream: wait until it runs.
      // The client retries a failing event stream forever, so bound the wait.
      const timeout = AbortSignal.timeout(callTimeoutMs);
      await raceAbort(
        client.objectsFetched,
        signal === undefined ? timeout : AbortSignal.any([signal, timeout]),
      );
    } catch (error) {
      await client.disconnect().catch(() => undefined);
      throw toXapiError(error, context);
    }
    const pool = client.pool;
    if (pool === null) {
      await client.disconnect().catch(() => undefined);
      throw xapiError('UNKNOWN', context, 'the host returned no pool object');
    }
    return new XapiPool(
      client,
      promiseToolbox.CancelToken,
      url,
      pool.uuid,
      pool.name_label,
      callTimeoutMs,
      options.taskTimeoutMs ?? 3_600_000,
      { origin: downloadOrigin(options.url), allowUnauthorized: options.allowUnauthorized ?? false },
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.client.disconnect().catch(() => undefined);
  }

  // ---------------------------------------------------------------- inventory

  /** Real VMs: no templates, snapshots or control domains. */
  async listVms(): Promise<VmInfo[]> {
    const operation = 'listing VMs';
    const all = (klass: string): Promise<Record<string, XapiRecord>> =>
      this.call<Record<string, XapiRecord>>(`${klass}.get_all_records`, [], { operation });
    const [vms, vbds, vdis, srs, vifs, networks] = await Promise.all([
      all('VM'),
      all('VBD'),
      all('VDI'),
      all('SR'),
      all('VIF'),
      all('network'),
    ]);
    const lookup = new RecordLookup(vbds, vdis, srs, vifs, networks);
    return Object.entries(vms)
      .filter(([, record]) => isRealVm(record))
      .map(([ref, record]) => lookup.vm(ref, record))
      .sort((a, b) => a.name.localeCompare(b.name) || a.uuid.localeCompare(b.uuid));
  }

  async getVm(uuid: string): Promise<VmInfo> {
    const object = `VM ${uuid}`;
    const ref = await this.call<string>('VM.get_by_uuid', [uuid], { operation: 'VM lookup', object });
    return this.vmByRef(ref);
  }

  async getVmByRef(ref: string): Promise<VmInfo> {
    return this.vmByRef(ref);
  }

  async listSrs(): Promise<SrInfo[]> {
    const operation = 'listing SRs';
    const [srs, pools] = await Promise.all([
      this.call<Record<string, XapiRecord>>('SR.get_all_records', [], { operation }),
      this.call<Record<string, XapiRecord>>('pool.get_all_records', [], { operation }),
    ]);
    const defaultSr = stringField(Object.values(pools)[0] ?? {}, 'default_SR');
    return Object.entries(srs)
      .map(([ref, record]): SrInfo => {
        const contentType = stringField(record, 'content_type');
        return {
          ref,
          uuid: stringField(record, 'uuid'),
          name: stringField(record, 'name_label'),
          type: stringField(record, 'type'),
          contentType,
          size: numberField(record, 'physical_size'),
          used: numberField(record, 'physical_utilisation'),
          isDefault: ref === defaultSr,
          acceptsDisks: contentType !== 'iso',
        };
      })
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** The pool's networks, by name; the management one is the network of a PIF with `management` set. */
  async listNetworks(): Promise<NetworkInfo[]> {
    const operation = 'listing networks';
    const [networks, pifs] = await Promise.all([
      this.call<Record<string, XapiRecord>>('network.get_all_records', [], { operation }),
      this.call<Record<string, XapiRecord>>('PIF.get_all_records', [], { operation }),
    ]);
    const management = new Set(
      Object.values(pifs)
        .filter((pif) => pif['management'] === true)
        .map((pif) => stringField(pif, 'network')),
    );
    return Object.entries(networks)
      .map(
        ([ref, record]): NetworkInfo => ({
          ref,
          uuid: stringField(record, 'uuid'),
          name: stringField(record, 'name_label'),
          bridge: stringField(record, 'bridge'),
          mtu: numberField(record, 'MTU'),
          isManagement: management.has(ref),
          isHostInternal: stringMap(record, 'other_config')['is_host_internal_management_network'] === 'true',
        }),
      )
      .sort((a, b) => a.name.localeCompare(b.name) || a.uuid.localeCompare(b.uuid));
  }

  async getVdi(vdiRef: string): Promise<VdiInfo> {
    const object = `VDI ${vdiRef}`;
    const record = await this.call<XapiRecord>('VDI.get_record', [vdiRef], {
      operation: 'VDI lookup',
      object,
    });
    const srUuid = await this.call<string>('SR.get_uuid', [stringField(record, 'SR')], {
      operation: 'SR lookup',
      object,
    });
    return vdiInfo(vdiRef, record, srUuid);
  }

  // ---------------------------------------------------------------- snapshots

  /**
   * Snapshots the VM and tags the snapshot and its disks with `otherConfig` (how Haven finds them
   * again: names are for humans).
   */
  async snapshotVm(
    vm: VmInfo | string,
    options: {
      name: string;
      otherConfig?: Record<string, string>;
      ignoredVdiUuids?: string[];
      signal?: AbortSignal;
    },
  ): Promise<SnapshotInfo> {
    const source = typeof vm === 'string' ? await this.getVm(vm) : vm;
    const object = describeVm(source);
    const ignored = (options.ignoredVdiUuids ?? []).map((uuid) => {
      const disk = source.disks.find((candidate) => candidate.vdiUuid === uuid);
      if (disk === undefined) {
        throw xapiError(
          'NOT_FOUND',
          { poolUrl: this.url, operation: 'VM.snapshot', object },
          `VDI ${uuid} to ignore is not a disk of this VM`,
        );
      }
      return disk.vdiRef;
    });
    const args: unknown[] = [source.ref, options.name];
    if (ignored.length > 0) args.push(ignored);
    const ref = await this.callAsync<string>(
      'VM.snapshot',
      args,
      { operation: 'VM.snapshot', object },
      options.signal,
    );
    try {
      const snapshot = await this.snapshotByRef(ref);
      const entries = Object.entries(options.otherConfig ?? {});
      // The snapshot and each of its disks at once (a round trip per entry and object, one after
      // another, was most of a snapshot's time); all of them ended before a failure is handled.
      const tagged = await Promise.allSettled([
        this.addOtherConfig(snapshot.ref, 'VM', entries, snapshot.otherConfig),
        ...snapshot.disks.map((disk) => this.addOtherConfig(disk.vdiRef, 'VDI', entries, disk.otherConfig)),
      ]);
      const failed = tagged.find(
        (outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected',
      );
      if (failed !== undefined) throw failed.reason;
      // What the calls above set, without reading the records back (two round trips per disk).
      return withOtherConfig(snapshot, Object.fromEntries(entries));
    } catch (error) {
      // An untagged snapshot would never be found again by its run: remove it (best effort).
      await this.destroySnapshot(ref).catch(() => undefined);
      throw error;
    }
  }

  /** The VM's snapshots, oldest first, optionally only those whose other_config has every given entry. */
  async listSnapshots(
    vmUuid: string,
    filter: { otherConfig?: Record<string, string> } = {},
  ): Promise<SnapshotInfo[]> {
    const vm = await this.vmRecordByUuid(vmUuid);
    const snapshots: SnapshotInfo[] = [];
    for (const ref of refList(vm.record, 'snapshots')) {
      let snapshot: SnapshotInfo;
      try {
        snapshot = await this.snapshotByRef(ref);
      } catch (error) {
        if (error instanceof XapiError && error.code === 'NOT_FOUND') continue; // removed meanwhile
        throw error;
      }
      const wanted = Object.entries(filter.otherConfig ?? {});
      if (wanted.every(([key, value]) => snapshot.otherConfig[key] === value)) snapshots.push(snapshot);
    }
    return snapshots.sort((a, b) => a.takenAt.getTime() - b.takenAt.getTime());
  }

  /** Removes a snapshot and its disks. Already gone is fine: retries after a crash must succeed. */
  async destroySnapshot(snapshot: SnapshotInfo | string): Promise<void> {
    let ref: string;
    if (typeof snapshot === 'string') {
      try {
        ref = snapshot.startsWith('OpaqueRef:')
          ? snapshot
          : await this.call<string>('VM.get_by_uuid', [snapshot], {
              operation: 'snapshot lookup',
              object: `snapshot ${snapshot}`,
            });
      } catch (error) {
        if (error instanceof XapiError && error.code === 'NOT_FOUND') return;
        throw error;
      }
    } else {
      ref = snapshot.ref;
    }
    let current: SnapshotInfo;
    try {
      current = await this.snapshotByRef(ref);
    } catch (error) {
      if (error instanceof XapiError && error.code === 'NOT_FOUND') return;
      throw error;
    }
    if (current.record['is_a_snapshot'] !== true) {
      throw xapiError(
        'OPERATION_NOT_ALLOWED',
        {
          poolUrl: this.url,
          operation: 'snapshot removal',
          object: `VM "${current.name}" (${current.uuid})`,
        },
        'this VM is not a snapshot; refusing to destroy it',
      );
    }
    await this.destroyVmAndDisks(ref, current.disks, `snapshot "${current.name}" (${current.uuid})`);
  }

  // ---------------------------------------------------------------- disk transfers

  /** The disk as a dynamic VHD, or with `baseVdiRef` a differencing VHD of the blocks changed since it. */
  exportVhd(
    vdiRef: string,
    options: { baseVdiRef?: string; signal?: AbortSignal } = {},
  ): Promise<XapiExportStream> {
    const query: Record<string, string> = { vdi: vdiRef, format: 'vhd' };
    if (options.baseVdiRef !== undefined) query['base'] = options.baseVdiRef;
    const object =
      options.baseVdiRef === undefined ? `VDI ${vdiRef}` : `VDI ${vdiRef} (delta from ${options.baseVdiRef})`;
    return this.download('/export_raw_vdi/', query, 'VHD export', object, options.signal);
  }

  /**
   * The raw disk; with `blocks` (2 MiB block indexes, increasing) only those blocks, concatenated,
   * the disk's last block cut at its end. The `blocks=` query is the simulator's only (real XAPI
   * ignores it): the fallback for CBT-changed blocks where the pool offers no NBD (`connectNbd`).
   */
  exportRaw(
    vdiRef: string,
    options: { signal?: AbortSignal; blocks?: readonly number[] } = {},
  ): Promise<XapiExportStream> {
    const query: Record<string, string> = { vdi: vdiRef, format: 'raw' };
    let object = `VDI ${vdiRef}`;
    if (options.blocks !== undefined) {
      query['blocks'] = blockListQuery(options.blocks);
      object = `${object} (${options.blocks.length} block(s))`;
    }
    return this.download('/export_raw_vdi/', query, 'raw export', object, options.signal);
  }

  /**
   * Writes a disk from a VHD (only its present blocks/sectors) or a raw image. Give `length` when
   * known (raw: the virtual size; VHD: `vhdStreamLength` of @haven/vhd): without it XAPI cannot
   * tell a complete upload from a cut one, since the client then closes the socket to finish.
   */
  async importVdi(
    vdiRef: string,
    data: Readable,
    options: { format: 'vhd' | 'raw'; length?: number; signal?: AbortSignal },
  ): Promise<void> {
    const object = `VDI ${vdiRef}`;
    await this.upload('/import_raw_vdi/', { vdi: vdiRef, format: options.format }, data, {
      operation: `${options.format} import`,
      object,
      length: options.length,
      signal: options.signal,
    });
  }

  /** Changed 64 KiB chunks between two CBT-enabled snapshots of one disk: 1 bit each, MSB first. */
  async listChangedBlocks(baseVdiRef: string, vdiRef: string, signal?: AbortSignal): Promise<Buffer> {
    const result = await this.callAsync<string>(
      'VDI.list_changed_blocks',
      [baseVdiRef, vdiRef],
      { operation: 'VDI.list_changed_blocks', object: `VDI ${vdiRef} against ${baseVdiRef}` },
      signal,
    );
    return Buffer.from(result, 'base64');
  }

  async enableCbt(vdiRef: string): Promise<void> {
    await this.callAsync('VDI.enable_cbt', [vdiRef], {
      operation: 'VDI.enable_cbt',
      object: `VDI ${vdiRef}`,
    });
  }

  async disableCbt(vdiRef: string): Promise<void> {
    await this.callAsync('VDI.disable_cbt', [vdiRef], {
      operation: 'VDI.disable_cbt',
      object: `VDI ${vdiRef}`,
    });
  }

  /**
   * `VDI.get_nbd_info`: where the VDI can be read over NBD, one entry per host that serves it; empty
   * when no network of the pool has the `nbd` (TLS) or `insecure_nbd` purpose.
   */
  async nbdInfo(vdiRef: string): Promise<VdiNbdInfo[]> {
    const context = { operation: 'VDI.get_nbd_info', object: `VDI ${vdiRef}` };
    const records = await this.call<unknown>('VDI.get_nbd_info', [vdiRef], context);
    if (!Array.isArray(records)) {
      throw xapiError(
        'UNKNOWN',
        { poolUrl: this.url, ...context },
        'the host answered something else than a list',
      );
    }
    return records.map((value: unknown) => {
      const record = (typeof value === 'object' && value !== null ? value : {}) as XapiRecord;
      const port = Number(record['port']);
      const address = stringField(record, 'address');
      const exportName = stringField(record, 'exportname');
      if (address === '' || exportName === '' || !Number.isInteger(port) || port <= 0 || port > 65535) {
        throw xapiError(
          'UNKNOWN',
          { poolUrl: this.url, ...context },
          'the host answered an NBD connection without address, port or export name',
        );
      }
      return {
        address,
        port,
        exportName,
        cert: stringField(record, 'cert'),
        subject: stringField(record, 'subject'),
      };
    });
  }

  /**
   * A connection reading the VDI over NBD, as XAPI offers it to backup tools: to the first host of
   * `nbdInfo` that accepts one (TLS when XAPI gives the host's certificate). Undefined when the
   * pool offers no NBD; then only HTTP exports read the disk. NBD failures are XapiErrors (a cut
   * connection or a refused export TRANSFER_FAILED, no host reachable UNREACHABLE, an abort
   * CANCELLED). Close the connection when done.
   */
  async connectNbd(
    vdiRef: string,
    options: { signal?: AbortSignal; maxInFlight?: number } = {},
  ): Promise<VdiNbdConnection | undefined> {
    const infos = await this.nbdInfo(vdiRef);
    const context = { poolUrl: this.url, operation: 'NBD connection', object: `VDI ${vdiRef}` };
    let unreachable: unknown;
    for (const info of infos) {
      try {
        const client = await NbdClient.connect({
          host: info.address,
          port: info.port,
          exportName: info.exportName,
          ...(info.cert === ''
            ? {}
            : { tls: { cert: info.cert, ...(info.subject === '' ? {} : { servername: info.subject }) } }),
          ...(options.maxInFlight === undefined ? {} : { maxInFlight: options.maxInFlight }),
          ...(options.signal === undefined ? {} : { signal: options.signal }),
        });
        return new VdiNbdConnection(client, { poolUrl: this.url, object: context.object });
      } catch (error) {
        // Another host may still serve the disk; any other refusal is the answer.
        if (!isNbdError(error, 'NBD_CONNECT_FAILED')) throw nbdFailure(error, context);
        unreachable = error;
      }
    }
    if (unreachable !== undefined) throw nbdFailure(unreachable, context);
    return undefined;
  }

  // ---------------------------------------------------------------- VM transfers

  /** The VM (halted, or a snapshot) as an XVA, compressed by the host. */
  exportVm(
    vmRef: string,
    options: { compression: XvaCompression; signal?: AbortSignal },
  ): Promise<XapiExportStream> {
    const useCompression =
      options.compression === 'none' ? 'false' : options.compression === 'gzip' ? 'true' : 'zstd';
    const object = `VM ${vmRef}`;
    return this.download(
      '/export/',
      { ref: vmRef, use_compression: useCompression },
      'XVA export',
      object,
      options.signal,
    );
  }

  /**
   * Imports an XVA (plain, gzip or zstd) as a new halted VM on the SR. `length` (the XVA's bytes) is
   * required: without it the xen-api client announces 1 PiB and closes the socket after the data, so
   * the host cannot tell a complete upload from a cut one (seen as "gzip data is corrupt" under load).
   */
  async importVm(
    xva: Readable,
    options: { srUuid: string; length: number; signal?: AbortSignal },
  ): Promise<VmInfo> {
    const object = `SR ${options.srUuid}`;
    const srRef = await this.call<string>('SR.get_by_uuid', [options.srUuid], {
      operation: 'SR lookup',
      object,
    });
    const result = await this.upload('/import/', { sr_id: srRef }, xva, {
      operation: 'XVA import',
      object,
      length: options.length,
      signal: options.signal,
    });
    const refs = Array.isArray(result) ? result.map(String) : typeof result === 'string' ? [result] : [];
    const vmRef = refs.at(0);
    if (vmRef === undefined || isNullRef(vmRef)) {
      throw xapiError(
        'TRANSFER_FAILED',
        { poolUrl: this.url, operation: 'XVA import', object },
        'the host returned no VM reference',
      );
    }
    return this.vmByRef(vmRef);
  }

  // ---------------------------------------------------------------- building VMs (restore, replication)

  /** A new halted VM from a manifest's VM record (memory, vCPUs, platform, boot settings…); no disks. */
  async createVm(options: {
    name: string;
    record: XapiRecord;
    otherConfig?: Record<string, string>;
    tags?: string[];
    blockedOperations?: Record<string, string>;
  }): Promise<VmInfo> {
    const fields: XapiRecord = { ...VM_CREATE_DEFAULTS };
    for (const field of VM_CREATE_FIELDS) {
      if (options.record[field] !== undefined) fields[field] = options.record[field];
    }
    fields['affinity'] = 'OpaqueRef:NULL'; // the source host means nothing on the target pool
    fields['is_a_template'] = false;
    fields['name_label'] = options.name;
    fields['other_config'] = { ...(options.otherConfig ?? {}) };
    fields['tags'] = [...(options.tags ?? [])];
    fields['blocked_operations'] = { ...(options.blockedOperations ?? {}) };
    const object = `new VM "${options.name}"`;
    const ref = await this.callAsync<string>('VM.create', [fields], { operation: 'VM.create', object });
    return this.vmByRef(ref);
  }

  async createVdi(options: {
    srUuid: string;
    name: string;
    virtualSize: number;
    description?: string;
    otherConfig?: Record<string, string>;
  }): Promise<VdiInfo> {
    const object = `new VDI "${options.name}" on SR ${options.srUuid}`;
    const srRef = await this.call<string>('SR.get_by_uuid', [options.srUuid], {
      operation: 'SR lookup',
      object,
    });
    const ref = await this.call<string>(
      'VDI.create',
      [
        {
          name_label: options.name,
          name_description: options.description ?? '',
          SR: srRef,
          virtual_size: String(options.virtualSize),
          type: 'user',
          sharable: false,
          read_only: false,
          other_config: { ...(options.otherConfig ?? {}) },
          xenstore_data: {},
          sm_config: {},
          tags: [],
        },
      ],
      { operation: 'VDI.create', object },
    );
    return this.getVdi(ref);
  }

  /** Plugs a disk into a VM at `position` (userdevice); position 0 is the boot disk. */
  async attachVdi(vmRef: string, vdiRef: string, position: number): Promise<string> {
    return this.call<string>(
      'VBD.create',
      [
        {
          VM: vmRef,
          VDI: vdiRef,
          userdevice: String(position),
          bootable: position === 0,
          mode: 'RW',
          type: 'Disk',
          unpluggable: true,
          empty: false,
          other_config: {},
          qos_algorithm_type: '',
          qos_algorithm_params: {},
        },
      ],
      { operation: 'VBD.create', object: `VM ${vmRef} with VDI ${vdiRef} at position ${position}` },
    );
  }

  /**
   * Gives a halted VM a network interface at `device` (`0` is eth0). Without `mac` XAPI generates
   * one (what a copy of a running VM needs, so the two never clash on a network).
   */
  async createVif(
    vmRef: string,
    options: {
      device: string;
      networkRef: string;
      mac?: string;
      mtu: number;
      otherConfig?: Record<string, string>;
    },
  ): Promise<VifInfo> {
    const object = `VM ${vmRef}, interface ${options.device} on network ${options.networkRef}`;
    const ref = await this.call<string>(
      'VIF.create',
      [
        {
          device: options.device,
          network: options.networkRef,
          VM: vmRef,
          MAC: options.mac ?? '',
          MTU: String(options.mtu),
          other_config: { ...(options.otherConfig ?? {}) },
          qos_algorithm_type: '',
          qos_algorithm_params: {},
          locking_mode: 'network_default',
          ipv4_allowed: [],
          ipv6_allowed: [],
        },
      ],
      { operation: 'VIF.create', object },
    );
    const record = await this.call<XapiRecord>('VIF.get_record', [ref], { operation: 'VIF lookup', object });
    const network = await this.call<XapiRecord>('network.get_record', [options.networkRef], {
      operation: 'network lookup',
      object,
    });
    return {
      ref,
      device: stringField(record, 'device'),
      mac: stringField(record, 'MAC'),
      networkUuid: stringField(network, 'uuid'),
      networkName: stringField(network, 'name_label'),
      mtu: numberField(record, 'MTU'),
    };
  }

  /** Destroys a VM (hard shutdown first if needed) and, on request, its disks. Already gone is fine. */
  async destroyVm(vmRef: string, options: { withDisks?: boolean } = {}): Promise<void> {
    let vm: VmInfo;
    try {
      vm = await this.vmByRef(vmRef);
    } catch (error) {
      if (error instanceof XapiError && error.code === 'NOT_FOUND') return;
      throw error;
    }
    const object = describeVm(vm);
    if (vm.powerState !== 'Halted') {
      await this.callAsync('VM.hard_shutdown', [vm.ref], { operation: 'VM.hard_shutdown', object });
    }
    await this.destroyVmAndDisks(vm.ref, options.withDisks === true ? vm.disks : [], object);
  }

  /** Destroys a disk on its own (e.g. one created for a restore that failed). Already gone is fine. */
  async destroyVdi(vdiRef: string): Promise<void> {
    try {
      await this.callAsync('VDI.destroy', [vdiRef], { operation: 'VDI.destroy', object: `VDI ${vdiRef}` });
    } catch (error) {
      if (!(error instanceof XapiError) || error.code !== 'NOT_FOUND') throw error;
    }
  }

  /** Grows a disk (replication target after the source disk grew); XAPI refuses to shrink. */
  async resizeVdi(vdiRef: string, virtualSize: number): Promise<void> {
    await this.callAsync('VDI.resize', [vdiRef, String(virtualSize)], {
      operation: `VDI.resize to ${virtualSize} bytes`,
      object: `VDI ${vdiRef}`,
    });
  }

  /** Starts a halted VM (health checks, failover once `start` is unblocked). */
  async startVm(vmRef: string, signal?: AbortSignal): Promise<void> {
    await this.callAsync(
      'VM.start',
      [vmRef, false, false],
      { operation: 'VM.start', object: `VM ${vmRef}` },
      signal,
    );
  }

  /** Shuts a VM down: cleanly (asks the guest) or, with `force`, at once. */
  async shutdownVm(vmRef: string, options: { force?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    const method = options.force === true ? 'VM.hard_shutdown' : 'VM.clean_shutdown';
    await this.callAsync(method, [vmRef], { operation: method, object: `VM ${vmRef}` }, options.signal);
  }

  /** One snapshot by uuid or ref; XapiNotFoundError when it is gone. */
  async getSnapshot(uuidOrRef: string): Promise<SnapshotInfo> {
    const ref = uuidOrRef.startsWith('OpaqueRef:')
      ? uuidOrRef
      : await this.call<string>('VM.get_by_uuid', [uuidOrRef], {
          operation: 'snapshot lookup',
          object: `snapshot ${uuidOrRef}`,
        });
    const snapshot = await this.snapshotByRef(ref);
    if (snapshot.record['is_a_snapshot'] !== true) {
      throw xapiError(
        'NOT_FOUND',
        {
          poolUrl: this.url,
          operation: 'snapshot lookup',
          object: `VM "${snapshot.name}" (${snapshot.uuid})`,
        },
        'this VM is not a snapshot',
      );
    }
    return snapshot;
  }

  // ---------------------------------------------------------------- metadata

  /** Sets (or with `null` removes) one other_config entry. */
  async setOtherConfig(
    ref: string,
    klass: OtherConfigClass,
    key: string,
    value: string | null,
  ): Promise<void> {
    const context = { operation: `${klass}.other_config["${key}"] update`, object: `${klass} ${ref}` };
    // remove then add: add_to_other_config refuses an existing key (MAP_DUPLICATE_KEY)
    await this.call(`${klass}.remove_from_other_config`, [ref, key], context);
    if (value !== null) await this.call(`${klass}.add_to_other_config`, [ref, key, value], context);
  }

  /**
   * Sets `entries` in the other_config of an object that was just read with `current`: a key it
   * does not hold is added in one call, without the remove setOtherConfig needs for one it holds
   * (a snapshot copies its VM's other_config).
   */
  private async addOtherConfig(
    ref: string,
    klass: OtherConfigClass,
    entries: readonly (readonly [string, string])[],
    current: Record<string, string>,
  ): Promise<void> {
    // Each key at once: they are independent entries of the map.
    const updated = await Promise.allSettled(
      entries.map(([key, value]) =>
        Object.hasOwn(current, key)
          ? this.setOtherConfig(ref, klass, key, value)
          : this.call(`${klass}.add_to_other_config`, [ref, key, value], {
              operation: `${klass}.other_config["${key}"] update`,
              object: `${klass} ${ref}`,
            }),
      ),
    );
    const failed = updated.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  /** Renames a VM (a VM imported from an XVA keeps the name it was exported with). */
  async renameVm(vmRef: string, name: string): Promise<void> {
    await this.call('VM.set_name_label', [vmRef, name], {
      operation: 'VM.set_name_label',
      object: `VM ${vmRef}`,
    });
  }

  async addTag(vmRef: string, tag: string): Promise<void> {
    await this.call('VM.add_tags', [vmRef, tag], { operation: `adding tag "${tag}"`, object: `VM ${vmRef}` });
  }

  async removeTag(vmRef: string, tag: string): Promise<void> {
    await this.call('VM.remove_tags', [vmRef, tag], {
      operation: `removing tag "${tag}"`,
      object: `VM ${vmRef}`,
    });
  }

  /** Blocks an operation (e.g. `start` on a replica until failover), with the reason users see. */
  async blockOperation(vmRef: string, operation: string, reason: string): Promise<void> {
    const context = { operation: `blocking "${operation}"`, object: `VM ${vmRef}` };
    await this.call('VM.remove_from_blocked_operations', [vmRef, operation], context);
    await this.call('VM.add_to_blocked_operations', [vmRef, operation, reason], context);
  }

  async unblockOperation(vmRef: string, operation: string): Promise<void> {
    await this.call('VM.remove_from_blocked_operations', [vmRef, operation], {
      operation: `unblocking "${operation}"`,
      object: `VM ${vmRef}`,
    });
  }

  // ---------------------------------------------------------------- backup marker

  /**
   * Claims `other_config['haven:<key>']` on the VM for `owner` until now + ttlMs, so that two Haven
   * installations never work on one VM at once. Refuses with XapiMarkerHeldError when another owner
   * holds a live marker; an expired marker (a crashed holder) is taken over; the owner may renew.
   */
  async acquireVmMarker(vmUuid: string, key: string, owner: string, ttlMs: number): Promise<VmMarker> {
    const vm = await this.vmRecordByUuid(vmUuid);
    const field = markerKey(key);
    const object = `VM "${stringField(vm.record, 'name_label')}" (${vmUuid})`;
    const context = { operation: `claiming marker ${field}`, object };
    const marker: VmMarker = { owner, until: new Date(Date.now() + ttlMs) };
    const value = encodeVmMarker(marker);
    try {
      // add_to_other_config is XAPI's only atomic "create if absent" on a VM.
      await this.call('VM.add_to_other_config', [vm.ref, field, value], context);
    } catch (error) {
      if (!(error instanceof XapiError) || error.xapiCode !== 'MAP_DUPLICATE_KEY') throw error;
      const current = decodeVmMarker(
        stringMap(await this.vmFreshRecord(vm.ref, object), 'other_config')[field],
      );
      this.refuseIfHeld(current, owner, field, object);
      await this.call('VM.remove_from_other_config', [vm.ref, field], context);
      try {
        await this.call('VM.add_to_other_config', [vm.ref, field, value], context);
      } catch (retry) {
        if (!(retry instanceof XapiError) || retry.xapiCode !== 'MAP_DUPLICATE_KEY') throw retry;
      }
    }
    // Read back: when two takers raced over an expired marker, the one not stored loses here.
    const stored = decodeVmMarker(stringMap(await this.vmFreshRecord(vm.ref, object), 'other_config')[field]);
    this.refuseIfHeld(stored, owner, field, object);
    if (stored === undefined) {
      throw xapiError(
        'UNKNOWN',
        { poolUrl: this.url, ...context },
        'the marker vanished right after being written',
      );
    }
    return stored;
  }

  /** Removes the marker if `owner` holds it (another owner's marker is left alone). */
  async releaseVmMarker(vmUuid: string, key: string, owner: string): Promise<void> {
    let vm: { ref: string; record: XapiRecord };
    try {
      vm = await this.vmRecordByUuid(vmUuid);
    } catch (error) {
      if (error instanceof XapiError && error.code === 'NOT_FOUND') return;
      throw error;
    }
    const field = markerKey(key);
    const current = decodeVmMarker(stringMap(vm.record, 'other_config')[field]);
    if (current?.owner !== owner) return;
    await this.call('VM.remove_from_other_config', [vm.ref, field], {
      operation: `releasing marker ${field}`,
      object: `VM ${vmUuid}`,
    });
  }

  /** The marker currently on the VM, live or expired, if any. */
  async readVmMarker(vmUuid: string, key: string): Promise<VmMarker | undefined> {
    const vm = await this.vmRecordByUuid(vmUuid);
    return decodeVmMarker(stringMap(vm.record, 'other_config')[markerKey(key)]);
  }

  // ---------------------------------------------------------------- internals

  private refuseIfHeld(current: VmMarker | undefined, owner: string, field: string, object: string): void {
    if (current === undefined || current.owner === owner || current.until.getTime() <= Date.now()) return;
    throw new XapiMarkerHeldError(
      `${object} is already being backed up by "${current.owner}" (marker ${field} held until ${current.until.toISOString()}) at pool ${this.url}; wait for that run to finish or for the marker to expire`,
      {
        poolUrl: this.url,
        operation: `claiming marker ${field}`,
        object,
        holder: current.owner,
        until: current.until,
      },
    );
  }

  private async call<T>(
    method: string,
    args: unknown[],
    context: { operation: string; object?: string },
  ): Promise<T> {
    this.assertOpen(context.operation);
    try {
      return (await this.client.call(method, ...args)) as T;
    } catch (error) {
      throw toXapiError(error, { poolUrl: this.url, ...context });
    }
  }

  /** An `Async.*` call: a XAPI task followed to its end, cancelled (task.cancel) when `signal` aborts. */
  private async callAsync<T>(
    method: string,
    args: unknown[],
    context: { operation: string; object?: string },
    signal?: AbortSignal,
  ): Promise<T> {
    this.assertOpen(context.operation);
    const timeout = AbortSignal.timeout(this.taskTimeoutMs);
    const stop = signal === undefined ? timeout : AbortSignal.any([signal, timeout]);
    try {
      stop.throwIfAborted();
      // The client cancels the task when `stop` fires; the race also covers a host ignoring task.cancel.
      const result = this.client.callAsync(this.cancelTokens.from(stop), method, ...args);
      return (await raceAbort(result, stop)) as T;
    } catch (error) {
      if (timeout.aborted && signal?.aborted !== true) {
        throw xapiError(
          'CANCELLED',
          { poolUrl: this.url, ...context, cause: error },
          `no result within ${this.taskTimeoutMs} ms; the task was cancelled`,
        );
      }
      throw toXapiError(signal?.aborted === true ? signal.reason : error, { poolUrl: this.url, ...context });
    }
  }

  private tokenOf(signal: AbortSignal | undefined): CancelTokenLike {
    return signal === undefined ? this.cancelTokens.source().token : this.cancelTokens.from(signal);
  }

  private async download(
    path: string,
    query: Record<string, string>,
    operation: string,
    object: string,
    signal?: AbortSignal,
  ): Promise<XapiExportStream> {
    this.assertOpen(operation);
    const context = { poolUrl: this.url, operation, object };
    const source = this.cancelTokens.source();
    const onAbort = (): void => source.cancel('aborted');
    signal?.addEventListener('abort', onAbort, { once: true });
    let task: string;
    try {
      signal?.throwIfAborted();
      task = await this.client.createTask(`Haven: ${operation}`);
    } catch (error) {
      signal?.removeEventListener('abort', onAbort);
      throw toXapiError(error, context);
    }
    const taskResult = this.client.watchTask(task);
    taskResult.catch(() => undefined);
    try {
      // The caller's signal also ends a download still waiting for the response head.
      const body = await this.openDownload(path, query, task, source.token, signal);
      signal?.removeEventListener('abort', onAbort);
      return new XapiExportStream({
        body,
        task: taskResult,
        cancelTask: async () => {
          source.cancel('stream destroyed');
          await this.client.call('task.cancel', task);
        },
        toError: (cause, progress) =>
          toXapiError(cause, progress === undefined ? context : { ...context, progress }),
        settleTimeoutMs: this.callTimeoutMs,
        signal,
      });
    } catch (error) {
      signal?.removeEventListener('abort', onAbort);
      await this.client.call('task.cancel', task).catch(() => undefined);
      // The task's error_info says more than "unexpected 500".
      const reason = await Promise.race([
        taskResult.then(
          () => undefined,
          (failure: unknown) => failure,
        ),
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 1000).unref()),
      ]);
      throw toXapiError(reason ?? error, context);
    }
  }

  /**
   * The body of a GET on the pool. Read directly from the master the client talks to, over a
   * connection of its own (openHttpDownload: about half the CPU per byte of the client's generic
   * HTTP stack, docs/benchmarks/xapi.md); through the client's getResource when the pool routes
   * transfers over a backup network (`xo:backupNetwork`, which the client resolves to a host
   * address) or no session id is known.
   */
  private async openDownload(
    path: string,
    query: Record<string, string>,
    task: string,
    token: CancelTokenLike,
    signal: AbortSignal | undefined,
  ): Promise<Readable> {
    const origin = this.currentMasterOrigin() ?? this.downloads.origin;
    const sessionId = this.client.sessionId;
    const backupNetwork = this.client.pool?.other_config?.['xo:backupNetwork'];
    if (origin === undefined || sessionId === undefined || backupNetwork !== undefined) {
      const response = await this.client.getResource(token, path, { query, task });
      return response.body;
    }
    const url = new URL(path, origin);
    for (const [key, value] of Object.entries({ ...query, session_id: sessionId, task_id: task })) {
      url.searchParams.set(key, value);
    }
    const download = await openHttpDownload(url, {
      allowUnauthorized: this.downloads.allowUnauthorized,
      inactivityTimeoutMs: this.callTimeoutMs,
      ...(signal === undefined ? {} : { signal }),
    });
    return download.body;
  }

  /** The master's address as the client now knows it (after a HOST_IS_SLAVE at login, the real one). */
  private currentMasterOrigin(): URL | undefined {
    const current = this.client._url;
    const given = this.downloads.origin;
    if (current?.hostname === undefined || given === undefined) return undefined;
    const origin = new URL(given);
    origin.hostname = current.hostname;
    if (current.port !== undefined) origin.port = current.port;
    return origin;
  }

  private async upload(
    path: string,
    query: Record<string, string>,
    body: Readable,
    options: {
      operation: string;
      object: string;
      length: number | undefined;
      signal: AbortSignal | undefined;
    },
  ): Promise<unknown> {
    const { operation, object, signal } = options;
    this.assertOpen(operation);
    const context = { poolUrl: this.url, operation, object };
    if (options.length !== undefined) {
      // the client sends `content-length` from the body's `length`
      Object.defineProperty(body, 'length', { value: options.length, configurable: true });
    }
    // A failing source must fail the upload, not end it early as if complete.
    let sourceError: unknown;
    const onSourceError = (error: unknown): void => {
      sourceError ??= error;
    };
    body.on('error', onSourceError);
    let task: string | undefined;
    const onAbort = (): void => {
      body.destroy();
      if (task !== undefined) this.client.call('task.cancel', task).catch(() => undefined);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      signal?.throwIfAborted();
      task = await this.client.createTask(`Haven: ${operation}`);
      const result = await this.client.putResource(this.tokenOf(signal), body, path, { query, task });
      signal?.throwIfAborted();
      if (sourceError !== undefined) throw new Error('data source failed', { cause: sourceError });
      return result;
    } catch (error) {
      if (task !== undefined) await this.client.call('task.cancel', task).catch(() => undefined);
      const cause: unknown = signal?.aborted === true ? signal.reason : (sourceError ?? error);
      if (sourceError !== undefined && signal?.aborted !== true) {
        throw xapiError('TRANSFER_FAILED', { ...context, cause }, `the data source failed: ${String(cause)}`);
      }
      const typed = toXapiError(cause, context);
      // an interrupted upload without a XAPI reason is a transfer failure, retried as such
      throw typed.code === 'UNKNOWN'
        ? xapiError('TRANSFER_FAILED', { ...context, cause }, typed.message)
        : typed;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      body.off('error', onSourceError);
    }
  }

  private assertOpen(operation: string): void {
    if (this.closed) {
      throw xapiError('UNKNOWN', { poolUrl: this.url, operation }, 'the connection to the pool was closed');
    }
  }

  private async vmRecordByUuid(uuid: string): Promise<{ ref: string; record: XapiRecord }> {
    const object = `VM ${uuid}`;
    const ref = await this.call<string>('VM.get_by_uuid', [uuid], { operation: 'VM lookup', object });
    return { ref, record: await this.vmFreshRecord(ref, object) };
  }

  private vmFreshRecord(ref: string, object: string): Promise<XapiRecord> {
    return this.call<XapiRecord>('VM.get_record', [ref], { operation: 'VM lookup', object });
  }

  private async vmByRef(ref: string): Promise<VmInfo> {
    const object = `VM ${ref}`;
    const record = await this.vmFreshRecord(ref, object);
    const lookup = await this.lookupFor(record, object);
    return lookup.vm(ref, record);
  }

  private async snapshotByRef(ref: string): Promise<SnapshotInfo> {
    const object = `snapshot ${ref}`;
    const record = await this.vmFreshRecord(ref, object);
    const lookup = await this.lookupFor(record, object);
    const vm = lookup.vm(ref, record);
    const parent = stringField(record, 'snapshot_of');
    let snapshotOf = '';
    if (!isNullRef(parent)) {
      snapshotOf = await this.call<string>('VM.get_uuid', [parent], { operation: 'VM lookup', object }).catch(
        () => '', // the source VM was destroyed; the snapshot stays usable
      );
    }
    return {
      ref,
      uuid: vm.uuid,
      name: vm.name,
      snapshotOf,
      takenAt: parseXapiDate(record['snapshot_time']),
      otherConfig: vm.otherConfig,
      disks: vm.disks,
      record,
    };
  }

  /** Fetches just the VBDs, VDIs, SRs, VIFs and networks one VM refers to. */
  private async lookupFor(record: XapiRecord, object: string): Promise<RecordLookup> {
    const context = { operation: 'VM lookup', object };
    // A VBD or VIF removed between the VM's record and this read is simply gone: skip it.
    const optional = async <T>(method: string, ref: string): Promise<T | undefined> => {
      try {
        return await this.call<T>(method, [ref], context);
      } catch (error) {
        if (error instanceof XapiError && error.code === 'NOT_FOUND') return undefined;
        throw error;
      }
    };
    const vbds: Record<string, XapiRecord> = {};
    const vdis: Record<string, XapiRecord> = {};
    const srs: Record<string, XapiRecord> = {};
    const vifs: Record<string, XapiRecord> = {};
    const networks: Record<string, XapiRecord> = {};
    await Promise.all(
      refList(record, 'VBDs').map(async (vbdRef) => {
        const vbd = await optional<XapiRecord>('VBD.get_record', vbdRef);
        if (vbd === undefined) return;
        vbds[vbdRef] = vbd;
        const vdiRef = stringField(vbd, 'VDI');
        if (stringField(vbd, 'type') !== 'Disk' || isNullRef(vdiRef)) return;
        const vdi = await optional<XapiRecord>('VDI.get_record', vdiRef);
        if (vdi === undefined) return;
        vdis[vdiRef] = vdi;
        const srRef = stringField(vdi, 'SR');
        if (!isNullRef(srRef)) srs[srRef] = { uuid: (await optional<string>('SR.get_uuid', srRef)) ?? '' };
        // Snapshot disks name their source VDI by ref; Haven wants the uuid.
        const parent = stringField(vdi, 'snapshot_of');
        if (!isNullRef(parent))
          vdi['$snapshotOfUuid'] = (await optional<string>('VDI.get_uuid', parent)) ?? '';
      }),
    );
    await Promise.all(
      refList(record, 'VIFs').map(async (vifRef) => {
        const vif = await optional<XapiRecord>('VIF.get_record', vifRef);
        if (vif === undefined) return;
        vifs[vifRef] = vif;
        const networkRef = stringField(vif, 'network');
        if (isNullRef(networkRef)) return;
        const network = await optional<XapiRecord>('network.get_record', networkRef);
        if (network !== undefined) networks[networkRef] = network;
      }),
    );
    return new RecordLookup(vbds, vdis, srs, vifs, networks);
  }

  /**
   * VM.destroy is a plain call: a record's removal, done before it answers (an `Async.` call would
   * wait for the client's event loop, up to its debounce).
   * The disks then go at once, each an `Async.VDI.destroy` (the storage's work, which may be slow).
   */
  private async destroyVmAndDisks(ref: string, disks: readonly DiskInfo[], object: string): Promise<void> {
    try {
      await this.call('VM.destroy', [ref], { operation: 'VM.destroy', object });
    } catch (error) {
      if (!(error instanceof XapiError) || error.code !== 'NOT_FOUND') throw error;
    }
    const destroyed = await Promise.allSettled(
      disks.map((disk) =>
        this.callAsync('VDI.destroy', [disk.vdiRef], {
          operation: 'VDI.destroy',
          object: `VDI "${disk.name}" (${disk.vdiUuid}) of ${object}`,
        }),
      ),
    );
    for (const outcome of destroyed) {
      if (outcome.status === 'fulfilled') continue;
      const error: unknown = outcome.reason;
      if (!(error instanceof XapiError) || error.code !== 'NOT_FOUND') throw error;
    }
  }
}

/** `snapshot` as read back after `added` was set in the other_config of it and of each of its disks. */
function withOtherConfig(snapshot: SnapshotInfo, added: Record<string, string>): SnapshotInfo {
  const otherConfig = { ...snapshot.otherConfig, ...added };
  return {
    ...snapshot,
    otherConfig,
    record: { ...snapshot.record, other_config: otherConfig },
    disks: snapshot.disks.map((disk) => ({ ...disk, otherConfig: { ...disk.otherConfig, ...added } })),
  };
}

/** Builds Haven's records from XAPI records already fetched. */
class RecordLookup {
  constructor(
    private readonly vbds: Record<string, XapiRecord>,
    private readonly vdis: Record<string, XapiRecord>,
    private readonly srs: Record<string, XapiRecord>,
    private readonly vifs: Record<string, XapiRecord>,
    private readonly networks: Record<string, XapiRecord>,
  ) {}

  vm(ref: string, record: XapiRecord): VmInfo {
    const otherConfig = stringMap(record, 'other_config');
    return {
      ref,
      uuid: stringField(record, 'uuid'),
      name: stringField(record, 'name_label'),
      description: stringField(record, 'name_description'),
      powerState: powerStateOf(record),
      tags: refList(record, 'tags'),
      otherConfig,
      blockedOperations: stringMap(record, 'blocked_operations'),
      isHavenManaged: HAVEN_MANAGED_KEY in otherConfig,
      disks: this.disks(record),
      vifs: this.vifList(record),
      memory: numberField(record, 'memory_static_max'),
      vcpus: numberField(record, 'VCPUs_max'),
      record,
    };
  }

  private disks(record: XapiRecord): DiskInfo[] {
    const disks: DiskInfo[] = [];
    for (const vbdRef of refList(record, 'VBDs')) {
      const vbd = this.vbds[vbdRef];
      if (!(vbdRef in this.vbds) || stringField(vbd, 'type') !== 'Disk') continue;
      const vdiRef = stringField(vbd, 'VDI');
      if (!(vdiRef in this.vdis)) continue;
      const vdi = this.vdis[vdiRef];
      const disk: DiskInfo = {
        vbdRef,
        vdiRef,
        vdiUuid: stringField(vdi, 'uuid'),
        name: stringField(vdi, 'name_label'),
        virtualSize: numberField(vdi, 'virtual_size'),
        physicalUtilisation: numberField(vdi, 'physical_utilisation'),
        srUuid: stringField(this.srs[stringField(vdi, 'SR')] ?? {}, 'uuid'),
        cbtEnabled: vdi['cbt_enabled'] === true,
        position: positionOf(stringField(vbd, 'userdevice')),
        otherConfig: stringMap(vdi, 'other_config'),
      };
      const snapshotOf = vdi['$snapshotOfUuid'];
      if (typeof snapshotOf === 'string' && snapshotOf !== '') disk.snapshotOf = snapshotOf;
      disks.push(disk);
    }
    return disks.sort((a, b) => a.position - b.position);
  }

  private vifList(record: XapiRecord): VifInfo[] {
    return refList(record, 'VIFs')
      .map((vifRef) => {
        const vif = this.vifs[vifRef] ?? {};
        const network = this.networks[stringField(vif, 'network')] ?? {};
        return {
          ref: vifRef,
          device: stringField(vif, 'device'),
          mac: stringField(vif, 'MAC'),
          networkUuid: stringField(network, 'uuid'),
          networkName: stringField(network, 'name_label'),
          mtu: numberField(vif, 'MTU'),
        };
      })
      .sort((a, b) => a.device.localeCompare(b.device));
  }
}

function vdiInfo(ref: string, record: XapiRecord, srUuid: string): VdiInfo {
  return {
    ref,
    uuid: stringField(record, 'uuid'),
    name: stringField(record, 'name_label'),
    virtualSize: numberField(record, 'virtual_size'),
    srUuid,
    cbtEnabled: record['cbt_enabled'] === true,
    otherConfig: stringMap(record, 'other_config'),
  };
}

function isRealVm(record: XapiRecord): boolean {
  return (
    record['is_a_template'] !== true &&
    record['is_a_snapshot'] !== true &&
    record['is_control_domain'] !== true
  );
}

function describeVm(vm: { name: string; uuid: string }): string {
  return `VM "${vm.name}" (${vm.uuid})`;
}

/** The pool's scheme, host and port for direct downloads; undefined if the URL does not parse. */
function downloadOrigin(url: string): URL | undefined {
  try {
    const parsed = new URL(url);
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return undefined;
    return new URL(`${parsed.protocol}//${parsed.host}/`);
  } catch {
    return undefined;
  }
}

/** The URL without user info: what error messages and logs may show. */
function safeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString().replace(/\/$/, '');
  } catch {
    return '(invalid pool URL)';
  }
}

/** `0-3,7,10-12`: increasing 2 MiB block indexes as ranges (a short query for long runs). */
export function blockListQuery(blocks: readonly number[]): string {
  const parts: string[] = [];
  let index = 0;
  while (index < blocks.length) {
    const first = blocks[index] ?? 0;
    if (!Number.isSafeInteger(first) || first < 0 || (index > 0 && first <= (blocks[index - 1] ?? 0))) {
      throw new RangeError(
        `block list must be increasing non-negative integers; got ${blocks.slice(0, 20).join(',')}`,
      );
    }
    let last = first;
    while (blocks[index + 1] === last + 1) {
      last++;
      index++;
    }
    parts.push(last === first ? String(first) : `${first}-${last}`);
    index++;
  }
  return parts.join(',');
}

async function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  let onAbort = (): void => undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    // the original rejection passes through untouched (it may come from another realm under Jest)
    return await Promise.race([promise, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
