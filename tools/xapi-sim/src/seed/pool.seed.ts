import { BLOCK_SIZE } from '../storage/block.constants';
import type { SimulatedPool } from '../model/simulated-pool';
import { srRecord, vmRecord } from '../model/record.defaults';
import { NULL_REF } from '../model/xapi-class';
import { SeededRandom, seededBytes, seededUuid } from './seeded-random';

export interface SeedOptions {
  seed: string;
  vms: number;
  diskSize: number;
  /** Fraction of each seeded disk's blocks that hold data (the rest read as zeros). */
  allocation: number;
  /** Capacity of each storage repository, in bytes. */
  srSize: number;
  /** Purposes of the pool's network: `insecure_nbd` / `nbd` let backups read disks over NBD. */
  networkPurpose: string[];
}

const TiB = 1024 ** 4;

/** The kinds of 2 MiB block a seeded disk holds, so backups meet zeros, duplicates and noise. */
export type SeededBlockKind = 'zero' | 'random' | 'repeated' | 'partial';

/** Which kind block `index` of seeded disk `disk` is: a pure function of the seed. */
export function seededBlockKind(
  seed: string,
  disk: string,
  index: number,
  allocation: number,
): SeededBlockKind {
  const random = new SeededRandom(seed, 'block-kind', disk, index);
  if (random.next() >= allocation) return 'zero';
  const kind = random.next();
  if (kind < 0.6) return 'random';
  if (kind < 0.85) return 'repeated';
  return 'partial';
}

/** The content of a seeded block (null for zero blocks). */
export function seededBlock(seed: string, disk: string, index: number, allocation: number): Buffer | null {
  const kind = seededBlockKind(seed, disk, index, allocation);
  switch (kind) {
    case 'zero':
      return null;
    case 'random':
      return seededBytes(seed, `disk:${disk}`, index * (BLOCK_SIZE / 16), BLOCK_SIZE);
    case 'repeated': {
      // Four pool-wide patterns: the same block content recurs within and across disks.
      const pattern = new SeededRandom(seed, 'pattern', disk, index).integer(4);
      const unit = seededBytes(seed, `pattern:${pattern}`, 0, 4096);
      const block = Buffer.allocUnsafe(BLOCK_SIZE);
      for (let offset = 0; offset < BLOCK_SIZE; offset += unit.length) unit.copy(block, offset);
      return block;
    }
    case 'partial': {
      const block = Buffer.alloc(BLOCK_SIZE);
      seededBytes(seed, `partial:${disk}`, index * (BLOCK_SIZE / 16), 256 * 1024).copy(block, 64 * 1024);
      return block;
    }
  }
}

/**
 * A first start: one pool with a master host (and its control domain), three SRs (local storage,
 * a replica target, an ISO library), one network, a template, and `vms` VMs with seeded disks.
 */
export async function seedPool(pool: SimulatedPool, options: SeedOptions): Promise<void> {
  const { seed } = options;
  const store = pool.store;
  const ref = (label: string): string => `OpaqueRef:${seededUuid(seed, 'ref', label)}`;
  const uuid = (label: string): string => seededUuid(seed, 'uuid', label);

  const poolRef = ref('pool');
  const hostRef = ref('host');
  const dom0 = ref('dom0');
  const networkRef = ref('network');
  const pifRef = ref('pif');
  const localSr = ref('sr-local');
  const replicaSr = ref('sr-replica');
  const isoSr = ref('sr-iso');

  store.create(
    'pool',
    {
      uuid: uuid('pool'),
      name_label: 'Simulated pool',
      name_description: 'XAPI simulator',
      master: hostRef,
      default_SR: localSr,
      suspend_image_SR: localSr,
      crash_dump_SR: localSr,
      other_config: {},
      gui_config: {},
      tags: [],
      blobs: {},
      ha_enabled: false,
      restrictions: {},
      cpu_info: { cpu_count: '4', socket_count: '1', vendor: 'GenuineIntel' },
      current_operations: {},
      allowed_operations: [],
      migration_compression: false,
      coordinator_bias: true,
    },
    poolRef,
  );
  store.create(
    'host',
    {
      uuid: uuid('host'),
      name_label: 'sim-host-1',
      name_description: 'Simulated host',
      hostname: 'sim-host-1',
      address: '127.0.0.1',
      enabled: true,
      API_version_major: 2,
      API_version_minor: 21,
      API_version_vendor: 'XenSource',
      software_version: {
        product_brand: 'XCP-ng',
        product_version: '8.3.0',
        platform_name: 'XCP',
        xapi: '24.19',
        xen: '4.17.4',
      },
      resident_VMs: [dom0],
      PIFs: [pifRef],
      PBDs: [],
      control_domain: dom0,
      memory_overhead: 0,
      cpu_info: { cpu_count: '4', socket_count: '1' },
      other_config: {},
      tags: [],
      license_params: {},
      current_operations: {},
      allowed_operations: [],
      suspend_image_sr: localSr,
      crash_dump_sr: localSr,
      metrics: NULL_REF,
    },
    hostRef,
  );
  store.create(
    'VM',
    vmRecord({
      uuid: uuid('dom0'),
      name_label: 'Control domain on host: sim-host-1',
      is_control_domain: true,
      power_state: 'Running',
      resident_on: hostRef,
      domid: 0,
    }),
    dom0,
  );

  for (const [srRef, label, type, contentType] of [
    [localSr, 'Local storage', 'ext', 'user'],
    [replicaSr, 'Replica storage', 'ext', 'user'],
    [isoSr, 'ISO library', 'iso', 'iso'],
  ] as const) {
    store.create(
      'SR',
      srRecord({
        uuid: uuid(label),
        name_label: label,
        type,
        content_type: contentType,
        physical_size: contentType === 'iso' ? TiB : options.srSize,
      }),
      srRef,
    );
    const pbd = store.create('PBD', {
      uuid: uuid(`pbd:${label}`),
      host: hostRef,
      SR: srRef,
      device_config: { location: `/var/run/sr-mount/${uuid(label)}` },
      currently_attached: true,
      other_config: {},
    });
    store.update('SR', srRef, (record) => {
      record['PBDs'] = [pbd];
    });
  }

  store.create(
    'network',
    {
      uuid: uuid('network'),
      name_label: 'Pool-wide network associated with eth0',
      name_description: '',
      bridge: 'xenbr0',
      MTU: 1500,
      PIFs: [pifRef],
      VIFs: [],
      other_config: {},
      tags: [],
      managed: true,
      allowed_operations: [],
      current_operations: {},
      blobs: {},
      default_locking_mode: 'unlocked',
      purpose: options.networkPurpose,
    },
    networkRef,
  );
  store.create(
    'PIF',
    {
      uuid: uuid('pif'),
      device: 'eth0',
      network: networkRef,
      host: hostRef,
      MAC: '02:00:00:00:00:01',
      MTU: 1500,
      VLAN: -1,
      physical: true,
      currently_attached: true,
      ip_configuration_mode: 'Static',
      IP: '127.0.0.1',
      netmask: '255.0.0.0',
      gateway: '',
      DNS: '',
      management: true,
      other_config: {},
    },
    pifRef,
  );

  pool.createVm(
    {
      uuid: uuid('template'),
      name_label: 'Debian Bookworm 12',
      name_description: 'Template (simulated)',
      is_a_template: true,
      is_default_template: true,
      other_config: { default_template: 'true' },
    },
    ref('template'),
  );

  for (let index = 0; index < options.vms; index++) {
    const name = `sim-vm-${index}`;
    const vm = pool.createVm(
      {
        uuid: uuid(`vm:${index}`),
        name_label: name,
        name_description: `Seeded VM ${index}`,
        memory_static_max: 2 * 1024 ** 3,
        memory_dynamic_max: 2 * 1024 ** 3,
        memory_dynamic_min: 2 * 1024 ** 3,
        VCPUs_max: 2,
        VCPUs_at_startup: 2,
        tags: index % 2 === 0 ? ['production'] : ['test'],
      },
      ref(`vm:${index}`),
    );
    // The first VM of a multi-VM pool has two disks so multi-disk paths are exercised.
    const diskCount = index === 0 && options.vms > 1 ? 2 : 1;
    for (let position = 0; position < diskCount; position++) {
      const diskName = `${name}-disk-${position}`;
      const vdi = pool.createVdi(
        {
          uuid: uuid(`vdi:${diskName}`),
          name_label: diskName,
          SR: localSr,
          virtual_size: options.diskSize,
        },
        ref(`vdi:${diskName}`),
      );
      const disk = pool.disks.get(vdi);
      for (let block = 0; block < disk.blockCount; block++) {
        const content = seededBlock(seed, diskName, block, options.allocation);
        if (content === null) continue;
        const length = Math.min(BLOCK_SIZE, options.diskSize - block * BLOCK_SIZE);
        await disk.write(block * BLOCK_SIZE, content.subarray(0, length));
      }
      pool.createVbd(
        {
          VM: vm,
          VDI: vdi,
          userdevice: String(position),
          bootable: position === 0,
          type: 'Disk',
          mode: 'RW',
        },
        ref(`vbd:${diskName}`),
      );
    }
    pool.createVbd(
      { VM: vm, VDI: NULL_REF, userdevice: '3', type: 'CD', mode: 'RO', empty: true },
      ref(`cd:${name}`),
    );
    pool.createVif(
      {
        VM: vm,
        network: networkRef,
        device: '0',
        MAC: `02:00:00:00:${(index >> 8).toString(16).padStart(2, '0')}:${(index & 255).toString(16).padStart(2, '0')}`,
      },
      ref(`vif:${name}`),
    );
    if (index % 2 === 0) pool.setPowerState(vm, 'Running');
  }
  pool.applyUsage();
}

/**
 * The pool's second host, a slave at `address` (`slaveAddress`): its record is made from the
 * master's (same software, no VMs, PIFs or PBDs of its own), once; a later start at another
 * address moves it there. Returns its ref.
 */
export function seedSlaveHost(pool: SimulatedPool, address: string): string {
  const store = pool.store;
  const master = pool.masterHost;
  const existing = store.all('host').find((host) => host.ref !== master);
  if (existing !== undefined) {
    if (existing.record['address'] !== address) store.setField('host', existing.ref, 'address', address);
    return existing.ref;
  }
  const seed = pool.options.seed;
  const record = structuredClone(store.get('host', master));
  return store.create(
    'host',
    {
      ...record,
      uuid: seededUuid(seed, 'uuid', 'host-2'),
      name_label: 'sim-host-2',
      hostname: 'sim-host-2',
      address,
      resident_VMs: [],
      PIFs: [],
      PBDs: [],
      control_domain: NULL_REF,
      other_config: {},
      tags: [],
      current_operations: {},
    },
    `OpaqueRef:${seededUuid(seed, 'ref', 'host-2')}`,
  );
}
