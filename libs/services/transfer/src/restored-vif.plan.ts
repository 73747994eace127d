import type { NetworkInfo, RecordedVif } from '@haven/xapi';

/** How the network of a restored interface was found on the target pool. */
export type NetworkMatch = 'uuid' | 'name' | 'management';

export interface RestoredVifPlan {
  device: string;
  network: NetworkInfo;
  matchedBy: NetworkMatch;
  /** The recorded MAC with `keepMacs`, else undefined: XAPI generates a new one. */
  mac?: string;
  mtu: number;
  /** What the backup recorded, for the log and the task result. */
  recorded: RecordedVif;
}

export interface RestoredVifPlans {
  plans: RestoredVifPlan[];
  /** Interfaces left out: the target pool has no network to put them on. */
  skipped: RecordedVif[];
}

/**
 * Where each recorded interface goes on the target pool: the same network (by uuid, then by name),
 * else the pool's management network. New MACs unless `keepMacs`: a restored copy must not clash
 * with the original still running on the same network.
 */
export function planRestoredVifs(
  recorded: readonly RecordedVif[],
  networks: readonly NetworkInfo[],
  options: { keepMacs: boolean },
): RestoredVifPlans {
  const usable = networks.filter((network) => !network.isHostInternal);
  const fallback = usable.find((network) => network.isManagement);
  const plans: RestoredVifPlan[] = [];
  const skipped: RecordedVif[] = [];
  for (const vif of recorded) {
    let network = usable.find((candidate) => vif.networkUuid !== '' && candidate.uuid === vif.networkUuid);
    let matchedBy: NetworkMatch = 'uuid';
    if (network === undefined) {
      network = usable.find((candidate) => vif.networkName !== '' && candidate.name === vif.networkName);
      matchedBy = 'name';
    }
    if (network === undefined) {
      network = fallback;
      matchedBy = 'management';
    }
    if (network === undefined) {
      skipped.push(vif);
      continue;
    }
    plans.push({
      device: vif.device,
      network,
      matchedBy,
      ...(options.keepMacs && vif.mac !== '' ? { mac: vif.mac } : {}),
      // The recorded MTU on the very same network; another network's own MTU otherwise.
      mtu: matchedBy === 'uuid' && vif.mtu > 0 ? vif.mtu : network.mtu,
      recorded: vif,
    });
  }
  return { plans, skipped };
}
