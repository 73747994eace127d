import type { MethodSpec } from '../rpc/method.table';
import { stringArg } from '../rpc/method.table';
import { isStruct, type XapiStruct, type XapiValue } from '../rpc/xapi-value';
import type { SimulatedPool } from '../model/simulated-pool';
import { XAPI_CLASSES, type XapiClass } from '../model/xapi-class';
import { XapiFailure } from '../xapi.failure';

/** Fields XAPI computes itself: they have getters but no `set_` (nor `add_to_`) methods. */
const READ_ONLY_FIELDS: ReadonlySet<string> = new Set([
  'uuid',
  'allowed_operations',
  'current_operations',
  'power_state',
  'is_a_snapshot',
  'snapshot_of',
  'snapshots',
  'snapshot_time',
  'is_control_domain',
  'resident_on',
  'domid',
  'VBDs',
  'VIFs',
  'VDIs',
  'PBDs',
  'PIFs',
  'virtual_size',
  'physical_utilisation',
  'physical_size',
  'virtual_allocation',
  'SR',
  'VM',
  'VDI',
  'currently_attached',
  'status',
  'progress',
  'result',
  'error_info',
  'created',
  'finished',
  'cbt_enabled',
  'type',
  'parent',
  'children',
  'master',
  'resident_VMs',
  'control_domain',
  'is_a_template',
]);

function cloneRecord(record: XapiStruct): XapiStruct {
  return structuredClone(record);
}

function sampleFields(pool: SimulatedPool, cls: XapiClass): string[] {
  const sample = pool.store.all(cls).at(0);
  return sample === undefined ? [] : Object.keys(sample.record);
}

/** `system.listMethods` entries for the generic accessors of every class. */
export function genericMethodNames(pool: SimulatedPool): string[] {
  const names: string[] = [];
  for (const cls of XAPI_CLASSES) {
    names.push(`${cls}.get_all_records`, `${cls}.get_all`, `${cls}.get_record`, `${cls}.get_by_uuid`);
    const fields = sampleFields(pool, cls);
    if (fields.includes('name_label')) names.push(`${cls}.get_by_name_label`);
    for (const field of fields) {
      names.push(`${cls}.get_${field}`);
      if (READ_ONLY_FIELDS.has(field)) continue;
      names.push(`${cls}.set_${field}`);
      const value = pool.store.all(cls).at(0)?.record[field];
      if (isStruct(value)) names.push(`${cls}.add_to_${field}`, `${cls}.remove_from_${field}`);
      if (Array.isArray(value)) names.push(`${cls}.add_${field}`, `${cls}.remove_${field}`);
    }
  }
  return names;
}

/**
 * Resolves `<class>.get_all_records`, `get_record`, `get_by_uuid`, `get_<field>`, `set_<field>`,
 * `add_to_<map>` / `remove_from_<map>` and `add_<set>` / `remove_<set>` for every class.
 */
export function genericMethod(
  pool: SimulatedPool,
  method: string,
  afterChange: (cls: XapiClass, ref: string, field: string) => void,
): MethodSpec | undefined {
  const dot = method.indexOf('.');
  if (dot === -1) return undefined;
  const cls = XAPI_CLASSES.find((name) => name === method.slice(0, dot));
  if (cls === undefined) return undefined;
  const operation = method.slice(dot + 1);
  const store = pool.store;

  const fieldOf = (ref: string, field: string, writable: boolean): XapiStruct => {
    const record = store.get(cls, ref);
    if (!(field in record) || (writable && READ_ONLY_FIELDS.has(field))) {
      throw new XapiFailure('MESSAGE_METHOD_UNKNOWN', [method]);
    }
    return record;
  };

  switch (operation) {
    case 'get_all_records':
      return {
        arity: 0,
        handler: () => {
          const records: XapiStruct = {};
          for (const object of store.all(cls)) records[object.ref] = cloneRecord(object.record);
          return records;
        },
      };
    case 'get_all':
      return { arity: 0, handler: () => store.all(cls).map((object) => object.ref) };
    case 'get_record':
      return { arity: 1, handler: (_, args) => cloneRecord(store.get(cls, stringArg(args, 0, 'self'))) };
    case 'get_by_uuid':
      return { arity: 1, handler: (_, args) => store.byUuidOf(cls, stringArg(args, 0, 'uuid')) };
    case 'get_by_name_label':
      return {
        arity: 1,
        handler: (_, args) => {
          const label = stringArg(args, 0, 'label');
          return store
            .all(cls)
            .filter((object) => object.record['name_label'] === label)
            .map((object) => object.ref);
        },
      };
  }

  if (operation.startsWith('get_')) {
    const field = operation.slice(4);
    return {
      arity: 1,
      handler: (_, args) => structuredClone(fieldOf(stringArg(args, 0, 'self'), field, false)[field] ?? null),
    };
  }
  if (operation.startsWith('set_')) {
    const field = operation.slice(4);
    return {
      arity: 2,
      handler: (_, args) => {
        const ref = stringArg(args, 0, 'self');
        const current = fieldOf(ref, field, true)[field];
        let value: XapiValue = args[1] ?? null;
        // XML-RPC clients send int64 as strings: keep the field's type.
        if (
          typeof current === 'number' &&
          typeof value === 'string' &&
          value.trim() !== '' &&
          !Number.isNaN(Number(value))
        ) {
          value = Number(value);
        }
        store.setField(cls, ref, field, value);
        afterChange(cls, ref, field);
        return '';
      },
    };
  }
  if (operation.startsWith('add_to_') || operation.startsWith('remove_from_')) {
    const adding = operation.startsWith('add_to_');
    const field = operation.slice(adding ? 7 : 12);
    return {
      arity: adding ? 2 + 1 : 2,
      handler: (_, args) => {
        const ref = stringArg(args, 0, 'self');
        const map = fieldOf(ref, field, true)[field];
        if (!isStruct(map)) throw new XapiFailure('MESSAGE_METHOD_UNKNOWN', [method]);
        const key = stringArg(args, 1, 'key');
        if (adding) {
          if (key in map) throw new XapiFailure('MAP_DUPLICATE_KEY', [cls, field, ref, key]);
          const value = args[2];
          store.update(cls, ref, (record) => {
            record[field] = {
              ...map,
              [key]: typeof value === 'string' ? value : JSON.stringify(value ?? null),
            };
          });
        } else if (key in map) {
          store.update(cls, ref, (record) => {
            record[field] = Object.fromEntries(Object.entries(map).filter(([name]) => name !== key));
          });
        }
        afterChange(cls, ref, field);
        return '';
      },
    };
  }
  if (operation.startsWith('add_') || operation.startsWith('remove_')) {
    const adding = operation.startsWith('add_');
    const field = operation.slice(adding ? 4 : 7);
    return {
      arity: 2,
      handler: (_, args) => {
        const ref = stringArg(args, 0, 'self');
        const list = fieldOf(ref, field, true)[field];
        if (!Array.isArray(list)) throw new XapiFailure('MESSAGE_METHOD_UNKNOWN', [method]);
        const value = args[1] ?? null;
        const present = list.some((item) => item === value);
        if (adding && !present) store.setField(cls, ref, field, [...list, value]);
        if (!adding && present)
          store.setField(
            cls,
            ref,
            field,
            list.filter((item) => item !== value),
          );
        afterChange(cls, ref, field);
        return '';
      },
    };
  }
  return undefined;
}
