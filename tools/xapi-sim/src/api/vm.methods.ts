import { boolArg, stringArg, type MethodTable } from '../rpc/method.table';
import { fieldRefs, fieldText, isStruct, withoutFields, type XapiStruct } from '../rpc/xapi-value';
import type { SimulatedPool } from '../model/simulated-pool';
import { XapiFailure } from '../xapi.failure';

function refList(value: unknown, name: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new XapiFailure('FIELD_TYPE_ERROR', [name]);
  return value.filter((item): item is string => typeof item === 'string');
}

function recordArg(value: unknown, name: string): XapiStruct {
  if (!isStruct(value as never)) throw new XapiFailure('FIELD_TYPE_ERROR', [name]);
  return value as XapiStruct;
}

/** VM lifecycle and copy operations with XAPI's power-state, template and blocked-operation rules. */
export function registerVmMethods(table: MethodTable, pool: SimulatedPool): void {
  const { store } = pool;

  const vmOf = (args: unknown[]): string => {
    const ref = stringArg(args as never, 0, 'vm');
    store.get('VM', ref);
    return ref;
  };

  table.register('VM.snapshot', {
    arity: [2, 3],
    async: true,
    handler: (_, args) =>
      pool.copyVm(vmOf(args), stringArg(args, 1, 'new_name'), 'snapshot', refList(args[2], 'ignore_vdis')),
  });
  table.register('VM.checkpoint', {
    arity: 2,
    async: true,
    handler: (_, args) => pool.copyVm(vmOf(args), stringArg(args, 1, 'new_name'), 'checkpoint'),
  });
  table.register('VM.clone', {
    arity: 2,
    async: true,
    handler: (_, args) => pool.copyVm(vmOf(args), stringArg(args, 1, 'new_name'), 'clone'),
  });
  table.register('VM.copy', {
    arity: 3,
    async: true,
    handler: (_, args) => {
      const sr = stringArg(args, 2, 'sr');
      if (sr !== '' && sr !== 'OpaqueRef:NULL') store.get('SR', sr);
      return pool.copyVm(
        vmOf(args),
        stringArg(args, 1, 'new_name'),
        'copy',
        [],
        sr === '' || sr === 'OpaqueRef:NULL' ? undefined : sr,
      );
    },
  });
  table.register('VM.revert', {
    arity: 1,
    async: true,
    handler: (_, args) => {
      pool.revertVm(vmOf(args));
      return '';
    },
  });
  table.register('VM.destroy', {
    arity: 1,
    async: true,
    handler: (_, args) => {
      pool.destroyVm(vmOf(args));
      return '';
    },
  });
  table.register('VM.create', {
    arity: 1,
    async: true,
    handler: (_, args) => {
      const record = recordArg(args[0], 'args');
      const fields = withoutFields(record, [
        'uuid',
        'power_state',
        'is_a_snapshot',
        'snapshot_of',
        'snapshots',
        'VBDs',
        'VIFs',
        'resident_on',
        'is_control_domain',
      ]);
      for (const [key, value] of Object.entries(fields)) {
        // XML-RPC int64 fields arrive as strings.
        if (
          typeof value === 'string' &&
          /^(memory_|VCPUs_max|VCPUs_at_startup|user_version|start_delay|shutdown_delay|order)/.test(key)
        ) {
          fields[key] = Number(value);
        }
      }
      return pool.createVm(fields);
    },
  });

  const requireStartable = (vm: string, operation: string): void => {
    const record = store.get('VM', vm);
    if (record['is_control_domain'] === true)
      throw new XapiFailure('OPERATION_NOT_ALLOWED', ['the control domain cannot change power state']);
    if (record['is_a_template'] === true) throw new XapiFailure('VM_IS_TEMPLATE', [vm, operation]);
    pool.assertNotBlocked(vm, operation);
  };

  table.register('VM.start', {
    arity: 3,
    async: true,
    handler: (_, args) => {
      const vm = vmOf(args);
      boolArg(args, 1, 'start_paused');
      boolArg(args, 2, 'force');
      requireStartable(vm, 'start');
      pool.assertPowerState(vm, 'Halted');
      pool.setPowerState(vm, 'Running');
      return '';
    },
  });
  table.register('VM.start_on', {
    arity: 4,
    async: true,
    handler: (_, args) => {
      const vm = vmOf(args);
      store.get('host', stringArg(args, 1, 'host'));
      requireStartable(vm, 'start_on');
      pool.assertPowerState(vm, 'Halted');
      pool.setPowerState(vm, 'Running');
      return '';
    },
  });
  for (const operation of ['clean_shutdown', 'hard_shutdown', 'shutdown'] as const) {
    table.register(`VM.${operation}`, {
      arity: 1,
      async: true,
      handler: (_, args) => {
        const vm = vmOf(args);
        requireStartable(vm, operation);
        pool.assertPowerState(vm, 'Running');
        pool.setPowerState(vm, 'Halted');
        return '';
      },
    });
  }
  for (const operation of ['clean_reboot', 'hard_reboot'] as const) {
    table.register(`VM.${operation}`, {
      arity: 1,
      async: true,
      handler: (_, args) => {
        const vm = vmOf(args);
        requireStartable(vm, operation);
        pool.assertPowerState(vm, 'Running');
        return '';
      },
    });
  }
  table.register('VM.set_is_a_template', {
    arity: 2,
    handler: (_, args) => {
      const vm = vmOf(args);
      const value = boolArg(args, 1, 'value');
      const record = store.get('VM', vm);
      if (value && record['power_state'] !== 'Halted' && record['is_a_snapshot'] !== true) {
        throw new XapiFailure('VM_BAD_POWER_STATE', [
          vm,
          'halted',
          fieldText(record, 'power_state').toLowerCase(),
        ]);
      }
      if (!value && record['is_a_snapshot'] === true) {
        throw new XapiFailure('OPERATION_NOT_ALLOWED', ['a snapshot cannot stop being a template']);
      }
      store.setField('VM', vm, 'is_a_template', value);
      pool.refreshVmOperations(vm);
      return '';
    },
  });
  table.register('VM.get_allowed_VBD_devices', {
    arity: 1,
    handler: (_, args) => {
      const vm = vmOf(args);
      const used = new Set(
        fieldRefs(store.get('VM', vm), 'VBDs').map((vbd) => fieldText(store.find(vbd)?.record, 'userdevice')),
      );
      return Array.from({ length: 16 }, (_unused, index) => String(index)).filter(
        (device) => !used.has(device),
      );
    },
  });
}
