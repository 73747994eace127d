/** What Haven needs to know about VMs, disks and SRs, read from XAPI records. */

/** other_config key marking VMs Haven created itself (replicas, health-check VMs); value = the role. */
export const HAVEN_MANAGED_KEY = 'haven:managed';

export type XapiRecord = Record<string, unknown>;

export interface DiskInfo {
  vbdRef: string;
  vdiRef: string;
  vdiUuid: string;
  name: string;
  virtualSize: number;
  /** Bytes the VDI takes on its SR (XAPI's physical_utilisation): about what an export carries. */
  physicalUtilisation: number;
  srUuid: string;
  cbtEnabled: boolean;
  /** VBD userdevice: the disk's position on the VM (0 boots first). */
  position: number;
  otherConfig: Record<string, string>;
  /** For a snapshot's disk: uuid of the VDI it was taken from. */
  snapshotOf?: string;
}

export interface VifInfo {
  ref: string;
  device: string;
  mac: string;
  networkUuid: string;
  networkName: string;
  /** Bytes; XAPI keeps the VIF's MTU beside its network's. */
  mtu: number;
}

export interface NetworkInfo {
  ref: string;
  uuid: string;
  name: string;
  bridge: string;
  mtu: number;
  /** Carries a host's management interface (a PIF with `management` set). */
  isManagement: boolean;
  /** XAPI's host-internal management network (no PIF, reachable only from the host). */
  isHostInternal: boolean;
}

export interface VmInfo {
  ref: string;
  uuid: string;
  name: string;
  description: string;
  powerState: 'Halted' | 'Running' | 'Paused' | 'Suspended';
  tags: string[];
  otherConfig: Record<string, string>;
  blockedOperations: Record<string, string>;
  /** Created by Haven (replica, health-check VM): never selected for backup. */
  isHavenManaged: boolean;
  disks: DiskInfo[];
  vifs: VifInfo[];
  /** Static maximum, bytes. */
  memory: number;
  vcpus: number;
  /** The raw VM record, for restore point manifests. */
  record: XapiRecord;
}

export interface SnapshotInfo {
  ref: string;
  uuid: string;
  name: string;
  /** uuid of the VM the snapshot was taken from. */
  snapshotOf: string;
  takenAt: Date;
  otherConfig: Record<string, string>;
  disks: DiskInfo[];
  record: XapiRecord;
}

export interface SrInfo {
  ref: string;
  uuid: string;
  name: string;
  type: string;
  contentType: string;
  /** Bytes. */
  size: number;
  used: number;
  isDefault: boolean;
  /** Can hold VM disks (not an ISO library). */
  acceptsDisks: boolean;
}

export interface VdiInfo {
  ref: string;
  uuid: string;
  name: string;
  virtualSize: number;
  srUuid: string;
  cbtEnabled: boolean;
  otherConfig: Record<string, string>;
}

export function stringField(record: XapiRecord, field: string): string {
  const value = record[field];
  if (typeof value === 'string') return value;
  return typeof value === 'number' || typeof value === 'boolean' ? String(value) : '';
}

/** int64 fields arrive as strings over XML-RPC and as numbers over JSON-RPC. */
export function numberField(record: XapiRecord, field: string): number {
  const value = Number(record[field] ?? 0);
  return Number.isFinite(value) ? value : 0;
}

export function stringMap(record: XapiRecord, field: string): Record<string, string> {
  const value = record[field];
  const result: Record<string, string> = {};
  if (typeof value !== 'object' || value === null) return result;
  for (const [key, entry] of Object.entries(value)) result[key] = String(entry);
  return result;
}

export function refList(record: XapiRecord, field: string): string[] {
  const value = record[field];
  return Array.isArray(value) ? value.map((entry) => String(entry)) : [];
}

export function isNullRef(ref: string): boolean {
  return ref === '' || ref === 'OpaqueRef:NULL';
}

const POWER_STATES = new Set(['Halted', 'Running', 'Paused', 'Suspended']);

export function powerStateOf(record: XapiRecord): VmInfo['powerState'] {
  const state = stringField(record, 'power_state');
  return POWER_STATES.has(state) ? (state as VmInfo['powerState']) : 'Halted';
}

/**
 * XAPI datetimes: `20261126T07:48:00Z` over XML-RPC, often ISO 8601 over JSON-RPC; both accepted.
 */
export function parseXapiDate(value: unknown): Date {
  // XML-RPC dateTime values arrive as Date objects (possibly of another realm, hence not instanceof)
  if (Object.prototype.toString.call(value) === '[object Date]') return new Date((value as Date).getTime());
  const text = typeof value === 'string' ? value : '';
  const compact = /^(\d{4})(\d{2})(\d{2})T(\d{2}):?(\d{2}):?(\d{2})(?:\.\d+)?(Z|[+-]\d{2}:?\d{2}|)$/.exec(
    text,
  );
  if (compact !== null) {
    const [, y, mo, d, h, mi, s, zone] = compact;
    // no zone means UTC, as XAPI means it
    return new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}${zone === '' ? 'Z' : zone}`);
  }
  return new Date(text);
}

/** The userdevice of a VBD as a number (XAPI keeps it as a string; `xvda`-style names are rare). */
export function positionOf(userdevice: string): number {
  const numeric = Number.parseInt(userdevice, 10);
  if (Number.isFinite(numeric)) return numeric;
  const letter = /^(?:xv|h|s)d([a-z])$/.exec(userdevice);
  return letter?.[1] === undefined ? Number.MAX_SAFE_INTEGER : letter[1].charCodeAt(0) - 97;
}
