import { pipeline } from 'node:stream/promises';
import type { Transform } from 'node:stream';
import {
  buildXvaVmRecord,
  createXvaStream,
  XVA_CHUNK_SIZE,
  type XmlRpcStruct,
  type XvaCompression,
} from '@haven/xva';
import type { SimulatedPool } from '../model/simulated-pool';
import { NULL_REF } from '../model/xapi-class';
import { fieldRefs, fieldText, isStruct, type XapiStruct, type XapiValue } from '../rpc/xapi-value';
import { BLOCK_SIZE } from '../storage/block.constants';
import { XapiFailure } from '../xapi.failure';
import type { HttpTransfer } from './http-transfer';
import { createTransferFaults } from './transfer-faults';

const CHUNKS_PER_BLOCK = BLOCK_SIZE / XVA_CHUNK_SIZE;

/** Records as ova.xml holds them: int64 as strings (XAPI's XML-RPC), references kept. */
function toOvaRecord(record: XapiStruct, drop: readonly string[] = []): XmlRpcStruct {
  const convert = (value: XapiValue): XmlRpcStruct[string] => {
    if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value;
    if (Array.isArray(value)) return value.map(convert);
    if (isStruct(value))
      return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, convert(item)]));
    return value;
  };
  return Object.fromEntries(
    Object.entries(record)
      .filter(([key]) => !drop.includes(key))
      .map(([key, value]) => [key, convert(value)]),
  );
}

function compressionOf(value: string | undefined): XvaCompression {
  switch (value) {
    case undefined:
    case 'false':
      return 'none';
    case 'true':
    case 'gzip':
      return 'gzip';
    case 'zstd':
      return 'zstd';
    default:
      throw new XapiFailure('FIELD_TYPE_ERROR', [`use_compression=${value}`]);
  }
}

/** GET /export/?ref=|uuid=&use_compression=false|true|zstd: the VM (or snapshot) as an XVA. */
export async function exportVm(pool: SimulatedPool, transfer: HttpTransfer): Promise<void> {
  transfer.begin();
  const target = transfer.query('ref') ?? transfer.query('uuid');
  if (target === undefined) throw new XapiFailure('FIELD_TYPE_ERROR', ['ref']);
  const vm = pool.store.resolve('VM', target);
  const record = pool.store.get('VM', vm);
  if (record['is_control_domain'] === true)
    throw new XapiFailure('OPERATION_NOT_ALLOWED', ['the control domain cannot be exported']);
  pool.assertNotBlocked(vm, 'export');
  if (record['power_state'] === 'Running' && record['is_a_snapshot'] !== true) {
    throw new XapiFailure('VM_BAD_POWER_STATE', [vm, 'halted', 'running']);
  }
  const compression = compressionOf(transfer.query('use_compression'));
  const disks: { vdi: XmlRpcStruct; vbd: XmlRpcStruct; ref: string }[] = [];
  for (const vbd of fieldRefs(record, 'VBDs')) {
    const vbdRecord = pool.store.find(vbd)?.record;
    if (vbdRecord?.['type'] !== 'Disk' || vbdRecord['empty'] === true) continue;
    const vdi = fieldText(vbdRecord, 'VDI');
    const vdiRecord = pool.store.find(vdi)?.record;
    if (vdiRecord === undefined || vdi === NULL_REF) continue;
    disks.push({
      ref: vdi,
      vdi: toOvaRecord(vdiRecord, ['VBDs', 'snapshots', 'SR']),
      vbd: toOvaRecord(vbdRecord, ['VM', 'VDI']),
    });
  }
  const vifs = fieldRefs(record, 'VIFs').flatMap((vif) => {
    const vifRecord = pool.store.find(vif)?.record;
    if (vifRecord === undefined) return [];
    const network = pool.store.find(fieldText(vifRecord, 'network'))?.record;
    return [
      {
        vif: toOvaRecord(vifRecord, ['VM', 'network']),
        ...(network === undefined ? {} : { network: toOvaRecord(network, ['VIFs', 'PIFs']) }),
      },
    ];
  });
  const { record: ova, diskIds } = buildXvaVmRecord({
    vm: toOvaRecord(record, ['VBDs', 'VIFs', 'snapshots', 'resident_on']),
    disks: disks.map(({ vdi, vbd }) => ({ vdi, vbd })),
    vifs,
  });
  const sources = disks.map(({ ref }, position) => {
    const disk = pool.disks.get(ref);
    return {
      id: diskIds[position] ?? '',
      virtualSize: disk.virtualSize,
      allocatedChunks: disk
        .allocatedBlocks()
        .flatMap((block) => Array.from({ length: CHUNKS_PER_BLOCK }, (_, i) => block * CHUNKS_PER_BLOCK + i)),
      readChunk: (index: number) =>
        disk.read(
          index * XVA_CHUNK_SIZE,
          Math.min(XVA_CHUNK_SIZE, disk.virtualSize - index * XVA_CHUNK_SIZE),
        ),
    };
  });
  const totalBytes = sources.reduce((sum, source) => sum + source.allocatedChunks.length * XVA_CHUNK_SIZE, 0);
  const body = createXvaStream({ vm: ova, disks: sources, compression, signal: transfer.signal });
  let sent = 0;
  body.on('data', (chunk: Buffer) => {
    sent += chunk.length;
    transfer.progress(Math.min(sent, totalBytes), totalBytes);
  });
  transfer.response.writeHead(200, { 'content-type': 'application/octet-stream' });
  const faults: Transform | undefined = createTransferFaults(pool.faults, 'export');
  if (faults === undefined) await pipeline(body, transfer.response, { signal: transfer.signal });
  else await pipeline(body, faults, transfer.response, { signal: transfer.signal });
  transfer.succeed();
}
