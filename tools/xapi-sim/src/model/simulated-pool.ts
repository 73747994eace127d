import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { fieldText, xapiDateTime, type XapiStruct, type XapiValue } from '../rpc/xapi-value';
import { BlockStore } from '../storage/block.store';
import { DiskRegistry } from '../storage/disk.registry';
import type { VirtualDisk } from '../storage/virtual-disk';
import { XapiFailure } from '../xapi.failure';
import { ExportLog } from './export.log';
import { ObjectStore } from './object.store';
import { SimulatorClock } from './simulator.clock';
import { vbdRecord, vdiRecord, vifRecord, vmRecord } from './record.defaults';
import { StateFile, STATE_FORMAT_VERSION } from './state.file';
import { TaskRegistry } from './task.registry';
import { NULL_REF } from './xapi-class';

export interface PoolOptions {
  stateDir: string;
  seed: string;
  user: string;
  password: string;
}

/** Test levers that make the pool misbehave on purpose. */
export interface PoolFaults {
  /** RPC and XAPI HTTP connections are dropped at once (the `/_sim/` API keeps answering). */
  unreachable: boolean;
  /** Added before every RPC answer and XAPI HTTP response. */
  latencyMs: number;
  /** Disk and VM exports break after this many bytes (connection destroyed, task failed VDI_IO_ERROR). */
  exportFailAfterBytes: number | null;
  /** How many exports still break (null: every one until the fault is cleared). */
  exportFailTimes: number | null;
  /** Throughput cap of exports and imports, bytes per second (null: unlimited). */
  bandwidthBytesPerSecond: number | null;
}

const VM_POWER_OPERATIONS: Record<string, string[]> = {
  Halted: [
    'start',
    'start_on',
    'clone',
    'copy',
    'snapshot',
    'checkpoint',
    'export',
    'destroy',
    'make_into_template',
  ],
  Running: [
    'clean_shutdown',
    'hard_shutdown',
    'clean_reboot',
    'hard_reboot',
    'snapshot',
    'checkpoint',
    'suspend',
    'pause',
  ],
  Suspended: ['resume', 'hard_shutdown', 'clone', 'copy', 'snapshot', 'checkpoint', 'export', 'destroy'],
  Paused: ['unpause', 'hard_shutdown', 'snapshot'],
};

function asStruct(value: XapiValue | undefined): XapiStruct {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? value : {};
}

function asRefs(value: XapiValue | undefined): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

/**
 * One simulated XAPI pool: its objects, disks, sessions and tasks, the operations that change
 * them with XAPI's rules and error codes, and the state folder that makes them persistent.
 */
export class SimulatedPool {
  readonly store = new ObjectStore();
  readonly tasks: TaskRegistry;
  readonly disks: DiskRegistry;
  /** Disk exports served, for tests counting how often a disk was read. */
  readonly exports = new ExportLog();
  /** The time snapshots record; settable by tests through the workload API. */
  readonly clock = new SimulatorClock();
  readonly faults: PoolFaults = {
    unreachable: false,
    latencyMs: 0,
    exportFailAfterBytes: null,
    exportFailTimes: null,
    bandwidthBytesPerSecond: null,
  };
  private readonly sessions = new Map<string, { user: string }>();
  private readonly stateFile: StateFile;
  private saveTimer: NodeJS.Timeout | undefined;
  private saving: Promise<void> = Promise.resolve();
  private readonly pendingUsage = new Set<string>();
  private usageScheduled = false;
  private closed = false;

  private constructor(
    readonly options: PoolOptions,
    blocks: BlockStore,
  ) {
    this.stateFile = new StateFile(options.stateDir);
    this.tasks = new TaskRegistry(this.store, () => this.masterHost);
    this.disks = new DiskRegistry(blocks, {
      capacity: (sr) => {
        const size = this.store.find(sr)?.record['physical_size'];
        return typeof size === 'number' ? size : 0;
      },
      usageChanged: (sr, disk) => {
        this.scheduleUsage(sr, disk);
        // A block map changed (a copy-on-write slot swap leaves no record changed): persist it.
        this.scheduleSave();
      },
    });
    this.store.onChange = (cls) => {
      if (cls !== 'task') this.scheduleSave();
    };
  }

  /** Opens the pool in `stateDir`; `seedPool` fills an empty folder (first start). */
  static async open(
    options: PoolOptions,
    seedPool: (pool: SimulatedPool) => Promise<void>,
  ): Promise<SimulatedPool> {
    await mkdir(options.stateDir, { recursive: true });
    const pool = new SimulatedPool(options, await BlockStore.open(options.stateDir));
    const state = await pool.stateFile.load();
    if (state === undefined) {
      await seedPool(pool);
      await pool.flush();
    } else {
      pool.store.restore(state.generation, state.objects);
      pool.disks.restore(state.cbtSequence, state.disks);
    }
    return pool;
  }

  get poolRef(): string {
    const pool = this.store.all('pool').at(0);
    if (pool === undefined) throw new Error('simulated pool has no pool object');
    return pool.ref;
  }

  get masterHost(): string {
    const master = this.store.all('pool')[0]?.record['master'];
    return typeof master === 'string' ? master : NULL_REF;
  }

  get defaultSr(): string {
    const sr = this.store.get('pool', this.poolRef)['default_SR'];
    return typeof sr === 'string' ? sr : NULL_REF;
  }

  // ---------------------------------------------------------------- sessions

  login(user: string, password: string): string {
    if (user !== this.options.user || password !== this.options.password) {
      throw new XapiFailure('SESSION_AUTHENTICATION_FAILED', [user, 'Authentication failure']);
    }
    const ref = `OpaqueRef:${randomUUID()}`;
    this.sessions.set(ref, { user });
    return ref;
  }

  logout(session: string): void {
    this.sessions.delete(session);
  }

  checkSession(session: XapiValue | undefined): string {
    if (typeof session !== 'string' || !this.sessions.has(session)) {
      throw new XapiFailure('SESSION_INVALID', [
        typeof session === 'string' ? session : JSON.stringify(session ?? null),
      ]);
    }
    return session;
  }

  // ---------------------------------------------------------------- persistence

  scheduleSave(): void {
    if (this.closed || this.saveTimer !== undefined) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      void this.flush().catch((error: unknown) => {
        process.stderr.write(`xapi-sim: saving state failed: ${String(error)}\n`);
      });
    }, 100);
  }

  /** Writes the state now (after the pending usage updates). */
  flush(): Promise<void> {
    this.applyUsage();
    this.saving = this.saving.then(() => {
      const { generation, objects } = this.store.snapshotForPersistence();
      const { cbtSequence, disks } = this.disks.persist();
      return this.stateFile.save({
        version: STATE_FORMAT_VERSION,
        seed: this.options.seed,
        generation,
        cbtSequence,
        objects,
        disks,
      });
    });
    return this.saving;
  }

  async close(): Promise<void> {
    if (this.saveTimer !== undefined) clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    await this.flush();
    this.closed = true;
    await this.disks.blocks.close();
  }

  // ---------------------------------------------------------------- accounting

  private scheduleUsage(sr: string, disk: VirtualDisk): void {
    this.pendingUsage.add(sr);
    this.pendingUsage.add(disk.vdiRef);
    if (this.usageScheduled) return;
    this.usageScheduled = true;
    setImmediate(() => this.applyUsage());
  }

  /** Publishes VDI and SR utilisation (coalesced: one event per object per turn, not per block). */
  applyUsage(): void {
    this.usageScheduled = false;
    const refs = [...this.pendingUsage];
    this.pendingUsage.clear();
    for (const ref of refs) {
      const object = this.store.find(ref);
      if (object?.cls === 'VDI') {
        const disk = this.disks.find(ref);
        const used = disk?.allocatedBytes ?? 0;
        if (object.record['physical_utilisation'] !== used)
          this.store.setField('VDI', ref, 'physical_utilisation', used);
      } else if (object?.cls === 'SR') {
        const used = this.disks.srUtilisation(ref);
        let allocation = 0;
        for (const vdi of asRefs(object.record['VDIs'])) {
          const size = this.store.find(vdi)?.record['virtual_size'];
          if (typeof size === 'number') allocation += size;
        }
        if (
          object.record['physical_utilisation'] !== used ||
          object.record['virtual_allocation'] !== allocation
        ) {
          this.store.update('SR', ref, (record) => {
            record['physical_utilisation'] = used;
            record['virtual_allocation'] = allocation;
          });
        }
      }
    }
  }

  // ---------------------------------------------------------------- object helpers

  private pushRef(
    cls: 'VM' | 'VDI' | 'SR' | 'network' | 'host',
    ref: string,
    field: string,
    item: string,
  ): void {
    if (!this.store.has(cls, ref)) return;
    this.store.update(cls, ref, (record) => {
      const list = asRefs(record[field]);
      if (!list.includes(item)) record[field] = [...list, item];
    });
  }

  private pullRef(
    cls: 'VM' | 'VDI' | 'SR' | 'network' | 'host',
    ref: string,
    field: string,
    item: string,
  ): void {
    if (!this.store.has(cls, ref)) return;
    this.store.update(cls, ref, (record) => {
      record[field] = asRefs(record[field]).filter((other) => other !== item);
    });
  }

  createVm(fields: XapiStruct, wantedRef?: string): string {
    const created = this.store.create(
      'VM',
      vmRecord({ ...fields, VBDs: [], VIFs: [], snapshots: [] }),
      wantedRef,
    );
    this.refreshVmOperations(created);
    return created;
  }

  createVdi(fields: XapiStruct, wantedRef?: string): string {
    const sr = typeof fields['SR'] === 'string' ? fields['SR'] : '';
    const srRecord = this.store.get('SR', sr);
    const virtualSize = Number(fields['virtual_size'] ?? 0);
    if (!Number.isSafeInteger(virtualSize) || virtualSize < 0)
      throw new XapiFailure('FIELD_TYPE_ERROR', ['virtual_size']);
    if (srRecord['content_type'] === 'iso') throw new XapiFailure('SR_OPERATION_NOT_SUPPORTED', [sr]);
    const capacity = Number(srRecord['physical_size']);
    if (virtualSize > capacity) throw new XapiFailure('SR_FULL', [String(virtualSize), String(capacity)]);
    const ref = this.store.create(
      'VDI',
      vdiRecord({ ...fields, virtual_size: virtualSize, physical_utilisation: 0, VBDs: [], snapshots: [] }),
      wantedRef,
    );
    this.store.update('VDI', ref, (record) => {
      record['location'] = record['uuid'] ?? '';
    });
    this.disks.create(ref, sr, virtualSize);
    this.pushRef('SR', sr, 'VDIs', ref);
    return ref;
  }

  createVbd(fields: XapiStruct, wantedRef?: string): string {
    const vm = typeof fields['VM'] === 'string' ? fields['VM'] : '';
    this.store.get('VM', vm);
    const vdi = typeof fields['VDI'] === 'string' ? fields['VDI'] : NULL_REF;
    const empty = vdi === NULL_REF || fields['empty'] === true;
    if (!empty) this.store.get('VDI', vdi);
    const userdevice = fieldText(fields, 'userdevice') || 'autodetect';
    const used = asRefs(this.store.get('VM', vm)['VBDs']).map(
      (vbd) => this.store.find(vbd)?.record['userdevice'],
    );
    let device = userdevice;
    if (userdevice === 'autodetect') {
      let next = 0;
      while (used.includes(String(next))) next++;
      device = String(next);
    } else if (used.includes(userdevice)) {
      throw new XapiFailure('DEVICE_ALREADY_EXISTS', [userdevice]);
    }
    const ref = this.store.create(
      'VBD',
      vbdRecord({
        ...fields,
        VM: vm,
        VDI: empty ? NULL_REF : vdi,
        empty,
        userdevice: device,
        currently_attached: false,
      }),
      wantedRef,
    );
    this.pushRef('VM', vm, 'VBDs', ref);
    if (!empty) this.pushRef('VDI', vdi, 'VBDs', ref);
    return ref;
  }

  destroyVbd(ref: string): void {
    const record = this.store.get('VBD', ref);
    if (record['currently_attached'] === true) {
      throw new XapiFailure('OPERATION_NOT_ALLOWED', [`VBD ${ref} is currently attached; unplug it first`]);
    }
    this.pullRef('VM', fieldText(record, 'VM'), 'VBDs', ref);
    this.pullRef('VDI', fieldText(record, 'VDI'), 'VBDs', ref);
    this.store.destroy('VBD', ref);
  }

  createVif(fields: XapiStruct, wantedRef?: string): string {
    const vm = typeof fields['VM'] === 'string' ? fields['VM'] : '';
    this.store.get('VM', vm);
    const network = typeof fields['network'] === 'string' ? fields['network'] : '';
    this.store.get('network', network);
    const device = fieldText(fields, 'device') || '0';
    const taken = asRefs(this.store.get('VM', vm)['VIFs']).some(
      (vif) => this.store.find(vif)?.record['device'] === device,
    );
    if (taken) throw new XapiFailure('DEVICE_ALREADY_EXISTS', [device]);
    const mac = typeof fields['MAC'] === 'string' && fields['MAC'] !== '' ? fields['MAC'] : randomMac();
    const ref = this.store.create(
      'VIF',
      vifRecord({
        ...fields,
        VM: vm,
        network,
        device,
        MAC: mac,
        MAC_autogenerated: fieldText(fields, 'MAC') === '',
      }),
      wantedRef,
    );
    this.pushRef('VM', vm, 'VIFs', ref);
    this.pushRef('network', network, 'VIFs', ref);
    return ref;
  }

  destroyVif(ref: string): void {
    const record = this.store.get('VIF', ref);
    this.pullRef('VM', fieldText(record, 'VM'), 'VIFs', ref);
    this.pullRef('network', fieldText(record, 'network'), 'VIFs', ref);
    this.store.destroy('VIF', ref);
  }

  /** The VM that has `vdi` attached while running, if any (VDI_IN_USE). */
  runningUserOf(vdi: string): string | undefined {
    for (const vbd of asRefs(this.store.get('VDI', vdi)['VBDs'])) {
      const record = this.store.find(vbd)?.record;
      if (record?.['currently_attached'] === true) return fieldText(record, 'VM');
    }
    return undefined;
  }

  destroyVdi(ref: string): void {
    const record = this.store.get('VDI', ref);
    if (this.runningUserOf(ref) !== undefined) throw new XapiFailure('VDI_IN_USE', [ref, 'destroy']);
    this.assertVdiNotBlocked(ref, 'destroy');
    for (const vbd of asRefs(record['VBDs'])) if (this.store.has('VBD', vbd)) this.destroyVbd(vbd);
    const parent = fieldText(record, 'snapshot_of');
    this.pullRef('VDI', parent, 'snapshots', ref);
    this.pullRef('SR', fieldText(record, 'SR'), 'VDIs', ref);
    this.disks.destroy(ref);
    this.store.destroy('VDI', ref);
  }

  /** VM.destroy: VBDs and VIFs go, VDIs stay (XAPI leaves disks to the caller). */
  destroyVm(ref: string): void {
    const record = this.store.get('VM', ref);
    if (record['is_control_domain'] === true) {
      throw new XapiFailure('OPERATION_NOT_ALLOWED', ['the control domain cannot be destroyed']);
    }
    this.assertNotBlocked(ref, 'destroy');
    const power = fieldText(record, 'power_state');
    if (power !== 'Halted' && !(record['is_a_snapshot'] === true)) {
      throw new XapiFailure('VM_BAD_POWER_STATE', [ref, 'halted', power.toLowerCase()]);
    }
    for (const vbd of asRefs(record['VBDs'])) {
      if (this.store.has('VBD', vbd)) {
        this.store.setField('VBD', vbd, 'currently_attached', false);
        this.destroyVbd(vbd);
      }
    }
    for (const vif of asRefs(record['VIFs'])) if (this.store.has('VIF', vif)) this.destroyVif(vif);
    this.pullRef('VM', fieldText(record, 'snapshot_of'), 'snapshots', ref);
    for (const snapshot of asRefs(record['snapshots'])) {
      if (this.store.has('VM', snapshot)) this.store.setField('VM', snapshot, 'snapshot_of', NULL_REF);
    }
    this.pullRef('host', fieldText(record, 'resident_on'), 'resident_VMs', ref);
    this.store.destroy('VM', ref);
  }

  // ---------------------------------------------------------------- rules

  assertNotBlocked(vm: string, operation: string): void {
    const blocked = asStruct(this.store.get('VM', vm)['blocked_operations']);
    if (Object.hasOwn(blocked, operation)) {
      throw new XapiFailure('OPERATION_BLOCKED', [vm, fieldText(blocked, operation)]);
    }
  }

  private assertVdiNotBlocked(_vdi: string, _operation: string): void {
    // VDIs have no blocked_operations in XAPI; the hook keeps destroy symmetrical with VMs.
  }

  assertPowerState(vm: string, expected: string): void {
    const actual = fieldText(this.store.get('VM', vm), 'power_state');
    if (actual !== expected)
      throw new XapiFailure('VM_BAD_POWER_STATE', [vm, expected.toLowerCase(), actual.toLowerCase()]);
  }

  refreshVmOperations(vm: string): void {
    const record = this.store.get('VM', vm);
    let operations = VM_POWER_OPERATIONS[fieldText(record, 'power_state')] ?? [];
    if (record['is_a_template'] === true) {
      operations =
        record['is_a_snapshot'] === true
          ? ['clone', 'copy', 'export', 'destroy', 'revert']
          : ['clone', 'copy', 'export', 'destroy', 'provision'];
    }
    if (record['is_control_domain'] === true) operations = [];
    const next = operations.filter(
      (operation) => !Object.hasOwn(asStruct(record['blocked_operations']), operation),
    );
    if (JSON.stringify(next) !== JSON.stringify(record['allowed_operations'])) {
      this.store.setField('VM', vm, 'allowed_operations', next);
    }
  }

  // ---------------------------------------------------------------- operations

  setPowerState(vm: string, state: 'Halted' | 'Running'): void {
    const running = state === 'Running';
    const host = this.masterHost;
    this.store.update('VM', vm, (record) => {
      record['power_state'] = state;
      record['resident_on'] = running ? host : NULL_REF;
      record['domid'] = running ? 1 + this.store.count('VM') : -1;
    });
    for (const vbd of asRefs(this.store.get('VM', vm)['VBDs'])) {
      if (this.store.has('VBD', vbd)) this.store.setField('VBD', vbd, 'currently_attached', running);
    }
    for (const vif of asRefs(this.store.get('VM', vm)['VIFs'])) {
      if (this.store.has('VIF', vif)) this.store.setField('VIF', vif, 'currently_attached', running);
    }
    if (running) this.pushRef('host', host, 'resident_VMs', vm);
    else this.pullRef('host', host, 'resident_VMs', vm);
    this.refreshVmOperations(vm);
  }

  /** A copy-on-write copy of a VDI: a snapshot (`snapshot_of` set) or an independent clone. */
  copyVdi(source: string, mode: 'snapshot' | 'clone', targetSr?: string): string {
    const record = this.store.get('VDI', source);
    if (record['type'] === 'cbt_metadata')
      throw new XapiFailure('VDI_INCOMPATIBLE_TYPE', [source, 'cbt_metadata']);
    const sr = targetSr ?? fieldText(record, 'SR');
    const disk = this.disks.get(source);
    const snapshot = mode === 'snapshot';
    const now = xapiDateTime(this.clock.now());
    const ref = this.store.create(
      'VDI',
      vdiRecord({
        name_label: record['name_label'] ?? '',
        name_description: record['name_description'] ?? '',
        SR: sr,
        virtual_size: disk.virtualSize,
        physical_utilisation: disk.allocatedBytes,
        type: record['type'] ?? 'user',
        sharable: record['sharable'] ?? false,
        read_only: record['read_only'] ?? false,
        other_config: snapshot ? { ...asStruct(record['other_config']) } : {},
        sm_config: { ...asStruct(record['sm_config']) },
        is_a_snapshot: snapshot,
        snapshot_of: snapshot ? source : NULL_REF,
        snapshot_time: snapshot ? now : '19700101T00:00:00Z',
        cbt_enabled: snapshot ? (record['cbt_enabled'] ?? false) : false,
      }),
    );
    this.store.update('VDI', ref, (fields) => {
      fields['location'] = fields['uuid'] ?? '';
    });
    this.disks.cloneDisk(disk, ref, sr, snapshot ? disk.snapshotCbt(true) : null);
    this.pushRef('SR', sr, 'VDIs', ref);
    if (snapshot) this.pushRef('VDI', source, 'snapshots', ref);
    return ref;
  }

  /**
   * VM.snapshot / VM.checkpoint / VM.clone / VM.copy: a new VM with copy-on-write copies of the
   * disks (minus `ignoredVdis`), the same VIFs, and the snapshot links XAPI maintains.
   */
  copyVm(
    vm: string,
    name: string,
    mode: 'snapshot' | 'checkpoint' | 'clone' | 'copy',
    ignoredVdis: readonly string[] = [],
    targetSr?: string,
  ): string {
    const source = this.store.get('VM', vm);
    if (source['is_control_domain'] === true) {
      throw new XapiFailure('OPERATION_NOT_ALLOWED', ['the control domain cannot be snapshotted or copied']);
    }
    this.assertNotBlocked(vm, mode);
    const snapshot = mode === 'snapshot' || mode === 'checkpoint';
    if (!snapshot && fieldText(source, 'power_state') !== 'Halted' && source['is_a_snapshot'] !== true) {
      throw new XapiFailure('VM_BAD_POWER_STATE', [
        vm,
        'halted',
        fieldText(source, 'power_state').toLowerCase(),
      ]);
    }
    for (const ignored of ignoredVdis) this.store.get('VDI', ignored);
    const copied = structuredClone(source);
    const now = xapiDateTime(this.clock.now());
    const ref = this.createVm({
      ...copied,
      uuid: randomUUID(),
      name_label: name,
      power_state: mode === 'checkpoint' && source['power_state'] === 'Running' ? 'Suspended' : 'Halted',
      is_a_snapshot: snapshot,
      is_a_template: snapshot ? true : (source['is_a_template'] ?? false),
      is_default_template: false,
      snapshot_of: snapshot ? vm : NULL_REF,
      snapshot_time: snapshot ? now : '19700101T00:00:00Z',
      snapshots: [],
      resident_on: NULL_REF,
      domid: -1,
      parent: snapshot ? NULL_REF : vm,
      allowed_operations: [],
      current_operations: {},
      blocked_operations: snapshot ? {} : { ...asStruct(source['blocked_operations']) },
      other_config: { ...asStruct(source['other_config']) },
      tags: [...asRefs(source['tags'])],
    });
    for (const vbd of asRefs(source['VBDs'])) {
      const record = this.store.find(vbd)?.record;
      if (record === undefined) continue;
      const vdi = fieldText(record, 'VDI');
      if (ignoredVdis.includes(vdi)) continue;
      let target = vdi;
      if (record['type'] === 'Disk' && record['empty'] !== true && this.store.has('VDI', vdi)) {
        target = snapshot
          ? this.copyVdi(vdi, 'snapshot')
          : this.copyVdi(vdi, 'clone', mode === 'copy' ? targetSr : undefined);
      }
      this.createVbd({
        VM: ref,
        VDI: target,
        userdevice: record['userdevice'] ?? 'autodetect',
        bootable: record['bootable'] ?? false,
        mode: record['mode'] ?? 'RW',
        type: record['type'] ?? 'Disk',
        empty: record['empty'] ?? false,
        other_config: { ...asStruct(record['other_config']) },
      });
    }
    for (const vif of asRefs(source['VIFs'])) {
      const record = this.store.find(vif)?.record;
      if (record === undefined) continue;
      this.createVif({
        VM: ref,
        network: record['network'] ?? NULL_REF,
        device: record['device'] ?? '0',
        MAC: snapshot ? (record['MAC'] ?? '') : '',
        MTU: record['MTU'] ?? 1500,
        other_config: { ...asStruct(record['other_config']) },
      });
    }
    if (snapshot) this.pushRef('VM', vm, 'snapshots', ref);
    this.refreshVmOperations(ref);
    return ref;
  }

  /** VM.revert: the VM's disks become copies of the snapshot's disks again. */
  revertVm(snapshot: string): void {
    const record = this.store.get('VM', snapshot);
    const vm = fieldText(record, 'snapshot_of');
    if (record['is_a_snapshot'] !== true || !this.store.has('VM', vm)) {
      throw new XapiFailure('VM_REVERT_FAILED', [snapshot, vm]);
    }
    this.assertPowerState(vm, 'Halted');
    const snapshotDisks = new Map<string, string>();
    for (const vbd of asRefs(record['VBDs'])) {
      const fields = this.store.find(vbd)?.record;
      if (fields !== undefined && fields['type'] === 'Disk')
        snapshotDisks.set(fieldText(fields, 'userdevice'), fieldText(fields, 'VDI'));
    }
    for (const vbd of asRefs(this.store.get('VM', vm)['VBDs'])) {
      const fields = this.store.find(vbd)?.record;
      if (fields === undefined || fields['type'] !== 'Disk') continue;
      const from = snapshotDisks.get(fieldText(fields, 'userdevice'));
      if (from === undefined) continue;
      const copy = this.copyVdi(from, 'clone');
      this.pullRef('VDI', fieldText(fields, 'VDI'), 'VBDs', vbd);
      this.store.setField('VBD', vbd, 'VDI', copy);
      this.pushRef('VDI', copy, 'VBDs', vbd);
    }
  }
}

function randomMac(): string {
  const bytes = [0xa2, ...Array.from({ length: 5 }, () => Math.floor(Math.random() * 256))];
  return bytes.map((byte) => byte.toString(16).padStart(2, '0')).join(':');
}
