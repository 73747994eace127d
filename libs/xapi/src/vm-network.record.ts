import type { VmInfo } from './xapi-inventory.model';

/**
 * A VM's network interface as a backup records it, so a restore can rebuild it after the source
 * VM (and its VIF and network objects) are gone: XAPI VM records only hold VIF refs.
 */
export interface RecordedVif {
  /** VIF device number as XAPI spells it (`0` is eth0). */
  device: string;
  mac: string;
  mtu: number;
  networkUuid: string;
  networkName: string;
}

/** Manifest attribute under which backups record the VM's network interfaces. */
export const RECORDED_VIFS_ATTRIBUTE = 'vifs';

/** The VM's interfaces in device order, as a manifest attribute stores them. */
export function recordVifs(vm: Pick<VmInfo, 'vifs'>): RecordedVif[] {
  return vm.vifs.map((vif) => ({
    device: vif.device,
    mac: vif.mac,
    mtu: vif.mtu,
    networkUuid: vif.networkUuid,
    networkName: vif.networkName,
  }));
}

/**
 * Reads the recorded interfaces back from a manifest attribute. `undefined` when the backup
 * recorded none (made before interfaces were recorded); entries that are not a recorded VIF are
 * counted in `malformed`, not guessed at.
 */
export function readRecordedVifs(value: unknown): { vifs: RecordedVif[]; malformed: number } | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) return { vifs: [], malformed: 1 };
  const vifs: RecordedVif[] = [];
  let malformed = 0;
  for (const entry of value as unknown[]) {
    const vif = asRecordedVif(entry);
    if (vif === undefined) malformed++;
    else vifs.push(vif);
  }
  return { vifs, malformed };
}

function asRecordedVif(entry: unknown): RecordedVif | undefined {
  if (typeof entry !== 'object' || entry === null) return undefined;
  const record = entry as Record<string, unknown>;
  const { device, mac, mtu, networkUuid, networkName } = record;
  if (typeof device !== 'string' || !/^\d+$/.test(device)) return undefined;
  if (typeof mac !== 'string' || typeof networkUuid !== 'string' || typeof networkName !== 'string')
    return undefined;
  if (typeof mtu !== 'number' || !Number.isInteger(mtu) || mtu < 0) return undefined;
  return { device, mac, mtu, networkUuid, networkName };
}
