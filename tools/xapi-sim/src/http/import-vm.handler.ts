import { Readable } from 'node:stream';
import { readXvaStream, XVA_CHUNK_SIZE, type XmlRpcStruct, type XmlRpcValue } from '@haven/xva';
import type { SimulatedPool } from '../model/simulated-pool';
import { vbdRecord, vdiRecord, vifRecord, vmRecord } from '../model/record.defaults';
import { NULL_REF } from '../model/xapi-class';
import { withoutFields, xapiDateTime, type XapiStruct, type XapiValue } from '../rpc/xapi-value';
import type { VirtualDisk } from '../storage/virtual-disk';
import { XapiFailure } from '../xapi.failure';
import { requestBody } from './http-request.body';
import type { HttpTransfer } from './http-transfer';
import { createTransferFaults } from './transfer-faults';

/**
 * ova.xml values back to record values: dates as XAPI datetime strings, and int64 strings back to
 * numbers where the class's default record has a number.
 */
function fromOvaRecord(snapshot: XmlRpcStruct, defaults: XapiStruct): XapiStruct {
  const convert = (value: XmlRpcValue): XapiValue => {
    if (value instanceof Date) return xapiDateTime(value);
    if (Array.isArray(value)) return value.map(convert);
    if (value !== null && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, convert(item)]));
    }
    return value;
  };
  const record: XapiStruct = {};
  for (const [key, value] of Object.entries(snapshot)) {
    let converted = convert(value);
    if (
      typeof defaults[key] === 'number' &&
      typeof converted === 'string' &&
      converted.trim() !== '' &&
      !Number.isNaN(Number(converted))
    ) {
      converted = Number(converted);
    }
    record[key] = converted;
  }
  return record;
}

const COMPUTED = [
  'uuid',
  'VBDs',
  'VIFs',
  'snapshots',
  'snapshot_of',
  'parent',
  'children',
  'resident_on',
  'allowed_operations',
  'current_operations',
  'consoles',
  'metrics',
  'guest_metrics',
];

/**
 * PUT /import/?sr_id=: an XVA (plain, gzip or zstd) becomes a new halted VM with its disks in the
 * SR; the task result is the array of refs, the VM first.
 */
export async function importVm(pool: SimulatedPool, transfer: HttpTransfer): Promise<void> {
  const { request, response } = transfer;
  transfer.begin();
  const srParam = transfer.query('sr_id');
  const sr = srParam === undefined ? pool.defaultSr : pool.store.resolve('SR', srParam);
  pool.store.get('SR', sr);
  response.writeHead(200, { 'content-type': 'application/octet-stream' });
  response.flushHeaders();
  const throttle = createTransferFaults(pool.faults, 'import');
  const source: AsyncIterable<Buffer> =
    throttle === undefined ? requestBody(request) : Readable.from(requestBody(request)).pipe(throttle);
  const created: { vm?: string; vdis: string[] } = { vdis: [] };
  const disks = new Map<string, VirtualDisk>();
  try {
    let total = 0;
    let written = 0;
    for await (const item of readXvaStream(source)) {
      if (item.type === 'metadata') {
        const vmFields = withoutFields(fromOvaRecord(item.vm.snapshot, vmRecord()), COMPUTED);
        const vm = pool.createVm({
          ...vmFields,
          power_state: 'Halted',
          is_a_snapshot: false,
          is_a_template: vmFields['is_a_snapshot'] === true ? false : (vmFields['is_a_template'] ?? false),
          snapshot_time: '19700101T00:00:00Z',
          blocked_operations: vmFields['blocked_operations'] ?? {},
        });
        created.vm = vm;
        for (const disk of item.disks) {
          const fields = withoutFields(fromOvaRecord(disk.vdi.snapshot, vdiRecord()), [
            ...COMPUTED,
            'SR',
            'is_a_snapshot',
            'physical_utilisation',
            'cbt_enabled',
            'location',
          ]);
          const vdi = pool.createVdi({
            ...fields,
            SR: sr,
            virtual_size: disk.virtualSize,
            type: fields['type'] === 'cbt_metadata' ? 'user' : (fields['type'] ?? 'user'),
          });
          created.vdis.push(vdi);
          disks.set(disk.id, pool.disks.get(vdi));
          total += disk.virtualSize;
          const vbd =
            disk.vbd === undefined
              ? {}
              : withoutFields(fromOvaRecord(disk.vbd.snapshot, vbdRecord()), [
                  ...COMPUTED,
                  'VM',
                  'VDI',
                  'currently_attached',
                  'device',
                ]);
          pool.createVbd({ ...vbd, VM: vm, VDI: vdi, type: 'Disk', empty: false });
        }
        const defaultNetwork = pool.store.all('network').at(0)?.ref ?? NULL_REF;
        for (const vif of item.vifs) {
          const fields = withoutFields(fromOvaRecord(vif.snapshot, vifRecord()), [
            ...COMPUTED,
            'VM',
            'network',
            'currently_attached',
          ]);
          const archived = item.objects.find((object) => object.id === vif.snapshot['network']);
          const label = archived?.snapshot['name_label'];
          const network =
            pool.store.all('network').find((object) => object.record['name_label'] === label)?.ref ??
            defaultNetwork;
          if (network !== NULL_REF) pool.createVif({ ...fields, VM: vm, network });
        }
        continue;
      }
      const disk = disks.get(item.diskId);
      if (disk === undefined)
        throw new XapiFailure('IMPORT_ERROR', [`chunk for unknown disk ${item.diskId}`]);
      await disk.write(item.chunkIndex * XVA_CHUNK_SIZE, item.data);
      written += item.data.length;
      transfer.progress(written, total);
    }
  } catch (error) {
    // A failed import leaves nothing behind, as XAPI cleans up its half-imported VM.
    if (created.vm !== undefined && pool.store.has('VM', created.vm)) pool.destroyVm(created.vm);
    for (const vdi of created.vdis) if (pool.store.has('VDI', vdi)) pool.destroyVdi(vdi);
    throw error instanceof XapiFailure
      ? error
      : new XapiFailure('IMPORT_ERROR', [error instanceof Error ? error.message : String(error)]);
  }
  if (created.vm === undefined) throw new XapiFailure('IMPORT_ERROR', ['the archive holds no VM']);
  transfer.succeed([created.vm]);
  if (!response.destroyed) response.end();
}
