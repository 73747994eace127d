import { randomUUID } from 'node:crypto';
import { intArg, stringArg, type MethodTable } from '../rpc/method.table';
import { fieldText, isStruct, withoutFields, type XapiStruct, type XapiValue } from '../rpc/xapi-value';
import type { SimulatedPool } from '../model/simulated-pool';
import { NULL_REF } from '../model/xapi-class';
import { BLOCK_SIZE } from '../storage/block.constants';
import { changedBlocksBitmap } from '../storage/virtual-disk';
import { XapiFailure } from '../xapi.failure';
import type { VdiNbdServer } from '../nbd/vdi-nbd.server';

/**
 * VHD-based SRs (ext, lvm) round VDI sizes up to whole 2 MiB blocks, as the storage manager does on
 * create and resize.
 */
function roundVhdSize(size: number): number {
  if (!Number.isSafeInteger(size) || size < 0) return size;
  return Math.ceil(size / BLOCK_SIZE) * BLOCK_SIZE;
}

function recordArg(args: readonly XapiValue[], name: string): XapiStruct {
  const value = args[0];
  if (!isStruct(value)) throw new XapiFailure('FIELD_TYPE_ERROR', [name]);
  return { ...value };
}

/** VDI, VBD, VIF and SR operations: copy-on-write clones, CBT, resize, attach rules. */
export function registerStorageMethods(table: MethodTable, pool: SimulatedPool, nbd: VdiNbdServer): void {
  const { store, disks } = pool;

  const vdiOf = (args: readonly XapiValue[], index = 0, name = 'vdi'): string => {
    const ref = stringArg(args, index, name);
    store.get('VDI', ref);
    return ref;
  };

  table.register('VDI.create', {
    arity: 1,
    async: true,
    handler: (_, args) => {
      const record = recordArg(args, 'args');
      return pool.createVdi(
        withoutFields({ ...record, virtual_size: roundVhdSize(Number(record['virtual_size'] ?? 0)) }, [
          'uuid',
          'VBDs',
          'snapshots',
          'is_a_snapshot',
          'snapshot_of',
          'physical_utilisation',
          'cbt_enabled',
        ]),
      );
    },
  });
  table.register('VDI.destroy', {
    arity: 1,
    async: true,
    handler: (_, args) => {
      pool.destroyVdi(vdiOf(args));
      return '';
    },
  });
  table.register('VDI.clone', {
    arity: [1, 2],
    async: true,
    handler: (_, args) => pool.copyVdi(vdiOf(args), 'clone'),
  });
  table.register('VDI.snapshot', {
    arity: [1, 2],
    async: true,
    handler: (_, args) => pool.copyVdi(vdiOf(args), 'snapshot'),
  });
  table.register('VDI.copy', {
    arity: [2, 4],
    async: true,
    handler: async (_, args) => {
      const vdi = vdiOf(args);
      const sr = stringArg(args, 1, 'sr');
      const into = typeof args[3] === 'string' ? args[3] : NULL_REF;
      if (into === NULL_REF) {
        store.get('SR', sr);
        return pool.copyVdi(vdi, 'clone', sr);
      }
      // Copy into an existing VDI: its content becomes the source's.
      const target = disks.get(vdiOf(args, 3, 'into_vdi'));
      const source = disks.get(vdi);
      if (target.virtualSize < source.virtualSize)
        throw new XapiFailure('VDI_TOO_SMALL', [into, String(source.virtualSize)]);
      await target.discardAll();
      const buffer = Buffer.allocUnsafe(2 * 1024 * 1024);
      for (const block of source.allocatedBlocks()) {
        await source.readBlockInto(block, buffer);
        const offset = block * buffer.length;
        await target.write(offset, buffer.subarray(0, Math.min(buffer.length, source.virtualSize - offset)));
      }
      return into;
    },
  });
  table.register('VDI.resize', {
    arity: 2,
    async: true,
    handler: async (_, args) => {
      const vdi = vdiOf(args);
      const size = roundVhdSize(intArg(args, 1, 'size'));
      if (pool.runningUserOf(vdi) !== undefined) throw new XapiFailure('VDI_IN_USE', [vdi, 'resize']);
      const disk = disks.get(vdi);
      if (size < disk.virtualSize) {
        throw new XapiFailure('SR_BACKEND_FAILURE_79', [
          '',
          `VDI Invalid size: shrinking ${vdi} from ${disk.virtualSize} to ${size} is not supported`,
          '',
        ]);
      }
      const capacity = Number(store.get('SR', disk.sr)['physical_size']);
      if (size > capacity) throw new XapiFailure('SR_FULL', [String(size), String(capacity)]);
      await disk.resize(size);
      store.setField('VDI', vdi, 'virtual_size', size);
      return '';
    },
  });
  table.register('VDI.enable_cbt', {
    arity: 1,
    async: true,
    handler: (_, args) => {
      const vdi = vdiOf(args);
      disks.get(vdi).enableCbt();
      store.setField('VDI', vdi, 'cbt_enabled', true);
      return '';
    },
  });
  table.register('VDI.disable_cbt', {
    arity: 1,
    async: true,
    handler: (_, args) => {
      const vdi = vdiOf(args);
      disks.get(vdi).disableCbt();
      store.setField('VDI', vdi, 'cbt_enabled', false);
      return '';
    },
  });
  table.register('VDI.list_changed_blocks', {
    arity: 2,
    async: true,
    handler: (_, args) => {
      const from = vdiOf(args, 0, 'vdi_from');
      const to = vdiOf(args, 1, 'vdi_to');
      return changedBlocksBitmap(disks.get(from), disks.get(to), from, to);
    },
  });
  table.register('VDI.data_destroy', {
    arity: 1,
    async: true,
    handler: async (_, args) => {
      const vdi = vdiOf(args);
      const record = store.get('VDI', vdi);
      if (record['cbt_enabled'] !== true) throw new XapiFailure('VDI_NO_CBT_METADATA', [vdi]);
      if (record['is_a_snapshot'] !== true) {
        throw new XapiFailure('OPERATION_NOT_ALLOWED', [
          `VDI.data_destroy needs a snapshot VDI; ${vdi} is not one`,
        ]);
      }
      if (pool.runningUserOf(vdi) !== undefined) throw new XapiFailure('VDI_IN_USE', [vdi, 'data_destroy']);
      await disks.get(vdi).discardAll();
      store.update('VDI', vdi, (fields) => {
        fields['type'] = 'cbt_metadata';
        // Only the changed-block log is left to use.
        fields['allowed_operations'] = ['destroy', 'list_changed_blocks', 'disable_cbt'];
      });
      return '';
    },
  });
  table.register('VDI.get_nbd_info', {
    arity: 1,
    // XAPI answers [] when no network has the nbd / insecure_nbd purpose.
    handler: (context, args) => nbd.connectionInfo(context.session, vdiOf(args)),
  });

  table.register('VBD.create', {
    arity: 1,
    async: true,
    handler: (_, args) => {
      const record = recordArg(args, 'args');
      if (
        typeof record['VM'] === 'string' &&
        store.has('VM', record['VM']) &&
        store.get('VM', record['VM'])['is_control_domain'] !== true
      ) {
        const running = store.get('VM', record['VM'])['power_state'] === 'Running';
        const vdi = record['VDI'];
        if (
          running &&
          typeof vdi === 'string' &&
          vdi !== NULL_REF &&
          pool.runningUserOf(vdi) !== undefined &&
          record['mode'] !== 'RO'
        ) {
          throw new XapiFailure('VDI_IN_USE', [vdi, 'attach']);
        }
      }
      return pool.createVbd(record);
    },
  });
  table.register('VBD.destroy', {
    arity: 1,
    async: true,
    handler: (_, args) => {
      pool.destroyVbd(stringArg(args, 0, 'self'));
      return '';
    },
  });
  table.register('VBD.plug', {
    arity: 1,
    async: true,
    handler: (_, args) => {
      const vbd = stringArg(args, 0, 'self');
      const record = store.get('VBD', vbd);
      const vm = fieldText(record, 'VM');
      if (
        store.get('VM', vm)['power_state'] !== 'Running' &&
        store.get('VM', vm)['is_control_domain'] !== true
      ) {
        throw new XapiFailure('VM_BAD_POWER_STATE', [
          vm,
          'running',
          fieldText(store.get('VM', vm), 'power_state').toLowerCase(),
        ]);
      }
      if (record['currently_attached'] === true) throw new XapiFailure('DEVICE_ALREADY_ATTACHED', [vbd]);
      store.setField('VBD', vbd, 'currently_attached', true);
      return '';
    },
  });
  for (const operation of ['unplug', 'unplug_force'] as const) {
    table.register(`VBD.${operation}`, {
      arity: 1,
      async: true,
      handler: (_, args) => {
        const vbd = stringArg(args, 0, 'self');
        if (store.get('VBD', vbd)['currently_attached'] !== true)
          throw new XapiFailure('DEVICE_ALREADY_DETACHED', [vbd]);
        store.setField('VBD', vbd, 'currently_attached', false);
        return '';
      },
    });
  }
  table.register('VIF.create', {
    arity: 1,
    async: true,
    handler: (_, args) => {
      const record = recordArg(args, 'args');
      // XAPI checks the MAC's syntax ('' asks it to generate one) and keeps MTU as an int64.
      const mac = fieldText(record, 'MAC');
      if (mac !== '' && !/^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i.test(mac))
        throw new XapiFailure('MAC_INVALID', [mac]);
      const mtu = Number(record['MTU'] ?? 1500);
      if (!Number.isInteger(mtu) || mtu < 0) throw new XapiFailure('FIELD_TYPE_ERROR', ['MTU']);
      return pool.createVif({ ...record, MTU: mtu });
    },
  });
  table.register('network.create', {
    arity: 1,
    async: true,
    handler: (_, args) => {
      const record = recordArg(args, 'args');
      const mtu = Number(record['MTU'] ?? 1500);
      if (!Number.isInteger(mtu) || mtu < 68) throw new XapiFailure('MTU_RANGE_ERROR', [String(mtu)]);
      const bridge = fieldText(record, 'bridge') || `xapi${store.all('network').length}`;
      return store.create('network', {
        uuid: randomUUID(),
        name_label: fieldText(record, 'name_label'),
        name_description: fieldText(record, 'name_description'),
        bridge,
        MTU: mtu,
        PIFs: [],
        VIFs: [],
        other_config: isStruct(record['other_config']) ? { ...record['other_config'] } : {},
        tags: Array.isArray(record['tags']) ? [...record['tags']] : [],
        managed: record['managed'] !== false,
        allowed_operations: [],
        current_operations: {},
        blobs: {},
        default_locking_mode: 'unlocked',
        purpose: [],
      });
    },
  });
  table.register('network.destroy', {
    arity: 1,
    async: true,
    handler: (_, args) => {
      const network = stringArg(args, 0, 'self');
      const record = store.get('network', network);
      const vifs = Array.isArray(record['VIFs']) ? record['VIFs'] : [];
      if (vifs.length > 0) throw new XapiFailure('NETWORK_CONTAINS_VIF', vifs.map(String));
      const pifs = Array.isArray(record['PIFs']) ? record['PIFs'] : [];
      if (pifs.length > 0) throw new XapiFailure('NETWORK_CONTAINS_PIF', pifs.map(String));
      store.destroy('network', network);
      return '';
    },
  });
  table.register('VIF.destroy', {
    arity: 1,
    async: true,
    handler: (_, args) => {
      pool.destroyVif(stringArg(args, 0, 'self'));
      return '';
    },
  });
  table.register('SR.scan', {
    arity: 1,
    async: true,
    handler: (_, args) => {
      store.get('SR', stringArg(args, 0, 'sr'));
      return '';
    },
  });
}
