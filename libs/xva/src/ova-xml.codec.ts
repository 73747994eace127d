import {
  decodeXmlRpcDocument,
  encodeXmlRpcValue,
  type XmlRpcStruct,
  type XmlRpcValue,
} from './xml-rpc.codec';
import { XVA_EXPORT_VERSION } from './xva.constants';
import { XvaFormatError } from './xva-format.error';

/** One database object of ova.xml: its class (VM, VBD, VDI, VIF, network, SR...), id and record. */
export interface XvaObject {
  class: string;
  /** Archive-local reference such as `Ref:3`; also the tar folder of a VDI's chunks. */
  id: string;
  snapshot: XmlRpcStruct;
}

/** What ova.xml describes: a version header and the objects, the VM first. */
export interface XvaVmRecord {
  version?: XmlRpcStruct;
  objects: XvaObject[];
}

export interface XvaDiskInfo {
  /** The VDI's id in ova.xml and the tar folder of its chunks. */
  id: string;
  virtualSize: number;
  vdi: XvaObject;
  /** The VBD attaching it to the VM, when there is one. */
  vbd: XvaObject | undefined;
}

export interface XvaMetadata {
  version: XmlRpcStruct;
  objects: XvaObject[];
  vm: XvaObject;
  disks: XvaDiskInfo[];
  vifs: XvaObject[];
}

function isStruct(value: XmlRpcValue | undefined): value is XmlRpcStruct {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function defaultVersion(): XmlRpcStruct {
  return {
    hostname: 'haven',
    date: new Date().toISOString().slice(0, 10),
    product_version: '8.2.1',
    product_brand: 'Haven',
    build_number: 'haven',
    xapi_major: '1',
    xapi_minor: '20',
    export_vsn: XVA_EXPORT_VERSION,
  };
}

export function encodeOvaXml(record: XvaVmRecord): string {
  const document: XmlRpcStruct = {
    version: { ...defaultVersion(), ...(record.version ?? {}) },
    objects: record.objects.map((object) => ({
      class: object.class,
      id: object.id,
      snapshot: object.snapshot,
    })),
  };
  return encodeXmlRpcValue(document);
}

/** A size field: XAPI writes int64 values as decimal strings. */
export function xvaSizeField(value: XmlRpcValue | undefined): number | undefined {
  const number = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN;
  return Number.isSafeInteger(number) && number >= 0 ? number : undefined;
}

function content(message: string): XvaFormatError {
  return new XvaFormatError('XVA_OVA_XML_CONTENT', `ova.xml ${message}`, 'ova.xml');
}

export function decodeOvaXml(xml: string): XvaMetadata {
  const document = decodeXmlRpcDocument(xml);
  if (!isStruct(document)) throw content('root is not a struct');
  const version = document['version'];
  const rawObjects = document['objects'];
  if (!isStruct(version)) throw content('lacks its version header');
  if (!Array.isArray(rawObjects)) throw content('lacks its objects array');
  const objects: XvaObject[] = rawObjects.map((raw, i) => {
    if (!isStruct(raw)) throw content(`object ${i} is not a struct`);
    const cls = raw['class'];
    const id = raw['id'];
    const snapshot = raw['snapshot'];
    if (typeof cls !== 'string' || typeof id !== 'string' || !isStruct(snapshot)) {
      throw content(`object ${i} lacks class, id or snapshot`);
    }
    return { class: cls, id, snapshot };
  });
  const byId = new Map(objects.map((object) => [object.id, object]));
  const vms = objects.filter((object) => object.class === 'VM');
  // The exported VM is the first one; the others are its snapshots when exported with them.
  const vm = vms.at(0);
  if (vm === undefined) throw content('holds no VM object');
  const vbds = objects.filter((object) => object.class === 'VBD');
  const disks: XvaDiskInfo[] = objects
    .filter((object) => object.class === 'VDI')
    .map((vdi) => {
      const virtualSize = xvaSizeField(vdi.snapshot['virtual_size']);
      if (virtualSize === undefined) throw content(`VDI ${vdi.id} has no valid virtual_size`);
      const vbd = vbds.find((candidate) => candidate.snapshot['VDI'] === vdi.id);
      return { id: vdi.id, virtualSize, vdi, vbd: vbd !== undefined && byId.has(vbd.id) ? vbd : undefined };
    });
  return { version, objects, vm, disks, vifs: objects.filter((object) => object.class === 'VIF') };
}

export interface XvaRecordInput {
  vm: XmlRpcStruct;
  disks?: { vdi: XmlRpcStruct; vbd?: XmlRpcStruct }[];
  vifs?: { vif: XmlRpcStruct; network?: XmlRpcStruct }[];
  version?: XmlRpcStruct;
}

/**
 * Builds ova.xml objects from plain records, numbering them `Ref:0`, `Ref:1`... and filling the
 * cross references XAPI's import follows (VM.VBDs, VBD.VM, VBD.VDI, VDI.VBDs, VM.VIFs, VIF.VM,
 * VIF.network). Returns the record and the ids of the disks in the order given.
 */
export function buildXvaVmRecord(input: XvaRecordInput): { record: XvaVmRecord; diskIds: string[] } {
  let next = 0;
  const ref = (): string => `Ref:${next++}`;
  const vmId = ref();
  const objects: XvaObject[] = [];
  const vm: XvaObject = { class: 'VM', id: vmId, snapshot: { ...input.vm } };
  objects.push(vm);
  const vbdIds: string[] = [];
  const vifIds: string[] = [];
  const diskIds: string[] = [];
  for (const disk of input.disks ?? []) {
    const vbdId = ref();
    const vdiId = ref();
    vbdIds.push(vbdId);
    diskIds.push(vdiId);
    objects.push({
      class: 'VBD',
      id: vbdId,
      snapshot: { type: 'Disk', mode: 'RW', bootable: false, ...(disk.vbd ?? {}), VM: vmId, VDI: vdiId },
    });
    const virtualSize = disk.vdi['virtual_size'];
    objects.push({
      class: 'VDI',
      id: vdiId,
      snapshot: {
        type: 'user',
        ...disk.vdi,
        ...(typeof virtualSize === 'number' ? { virtual_size: String(virtualSize) } : {}),
        VBDs: [vbdId],
      },
    });
  }
  for (const entry of input.vifs ?? []) {
    const vifId = ref();
    vifIds.push(vifId);
    let networkId: string | undefined;
    if (entry.network !== undefined) {
      networkId = ref();
      objects.push({ class: 'network', id: networkId, snapshot: { ...entry.network, VIFs: [vifId] } });
    }
    objects.push({
      class: 'VIF',
      id: vifId,
      snapshot: { ...entry.vif, VM: vmId, ...(networkId === undefined ? {} : { network: networkId }) },
    });
  }
  vm.snapshot['VBDs'] = vbdIds;
  vm.snapshot['VIFs'] = vifIds;
  return { record: { objects, ...(input.version === undefined ? {} : { version: input.version }) }, diskIds };
}
