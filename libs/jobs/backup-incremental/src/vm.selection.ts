import { HAVEN_MANAGED_KEY, type VmInfo } from '@haven/xapi';
import { globMatcher } from '@haven/plugin-sdk';
import { BackupJobError } from './backup-incremental.errors';

/** The tag an operator sets on a VM that must never be backed up, whatever the job says. */
export const NO_BACKUP_TAG = 'no-backup';

export interface SmartSelection {
  tags?: readonly string[];
  excludeTags?: readonly string[];
  powerState?: 'running' | 'halted' | 'any';
  namePattern?: string;
}

export { globMatcher } from '@haven/plugin-sdk';

/** VMs Haven must never back up: tagged no-backup, or created by Haven (replicas, health checks). */
export function isExcludedAlways(vm: VmInfo): boolean {
  return vm.tags.includes(NO_BACKUP_TAG) || vm.isHavenManaged || HAVEN_MANAGED_KEY in vm.otherConfig;
}

/** Smart mode: VMs with any of `tags` (all VMs when none), none of `excludeTags`, in the power state, matching the name. */
export function selectVms(vms: readonly VmInfo[], selection: SmartSelection): VmInfo[] {
  const matchesName = selection.namePattern !== undefined ? globMatcher(selection.namePattern) : () => true;
  const tags = selection.tags ?? [];
  const excluded = selection.excludeTags ?? [];
  const power = selection.powerState ?? 'any';
  return vms
    .filter((vm) => !isExcludedAlways(vm))
    .filter((vm) => tags.length === 0 || vm.tags.some((tag) => tags.includes(tag)))
    .filter((vm) => !vm.tags.some((tag) => excluded.includes(tag)))
    .filter(
      (vm) =>
        power === 'any' ||
        (power === 'running' && vm.powerState === 'Running') ||
        (power === 'halted' && vm.powerState === 'Halted'),
    )
    .filter((vm) => matchesName(vm.name))
    .sort((a, b) => a.name.localeCompare(b.name));
}

function stringList(value: unknown, field: string): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((entry): entry is string => typeof entry === 'string')) {
    throw new BackupJobError('INVALID_SELECTION', `job selection field "${field}" must be a list of strings`);
  }
  return value;
}

/**
 * The pools a job selects from: a list of pool ids, or a glob over the tenant's pool names (`*` =
 * every pool of the tenant, at each run).
 */
export type PoolSelection = { ids: string[] } | { namePattern: string };

export interface ParsedSelection {
  pools: PoolSelection;
  mode: 'explicit' | 'smart';
  vms: string[];
  smart: SmartSelection;
}

/**
 * Reads the pools of a selection: `pools` (a list of ids, or a pattern over names), else the
 * `poolId` of jobs made before a job could span pools; explicit mode without either looks for its
 * VMs in every pool of the tenant (VM uuids are unique across pools).
 */
function parsePools(selection: Record<string, unknown>, mode: 'explicit' | 'smart'): PoolSelection {
  const pools = selection['pools'];
  const poolId = selection['poolId'];
  if (pools !== undefined && poolId !== undefined)
    throw new BackupJobError(
      'INVALID_SELECTION',
      'job selection has both "pools" and "poolId"; keep "pools" only',
    );
  if (typeof pools === 'string') {
    if (pools.trim() === '')
      throw new BackupJobError('INVALID_SELECTION', 'job selection "pools" is an empty pattern');
    return { namePattern: pools };
  }
  if (pools !== undefined) {
    const ids = stringList(pools, 'pools') ?? [];
    if (ids.length === 0 || ids.some((id) => id === ''))
      throw new BackupJobError(
        'INVALID_SELECTION',
        'job selection "pools" must list at least one pool id, or be a pattern over pool names ("*" for all)',
      );
    return { ids: [...new Set(ids)] };
  }
  if (typeof poolId === 'string' && poolId !== '') return { ids: [poolId] };
  if (poolId !== undefined)
    throw new BackupJobError('INVALID_SELECTION', 'job selection "poolId" must be a pool id');
  if (mode === 'explicit') return { namePattern: '*' };
  throw new BackupJobError(
    'INVALID_SELECTION',
    'smart job selection names no pool; edit the job and set "pools" (pool ids, or a pattern over pool names such as "*")',
  );
}

/** Reads a job's stored selection (validated by the gateway) into typed form. */
export function parseSelection(selection: Record<string, unknown>): ParsedSelection {
  const mode = selection['mode'];
  if (mode !== 'explicit' && mode !== 'smart') {
    throw new BackupJobError('INVALID_SELECTION', 'job selection "mode" must be "explicit" or "smart"');
  }
  const power = selection['powerState'];
  const pattern = selection['namePattern'];
  const tags = stringList(selection['tags'], 'tags');
  const excludeTags = stringList(selection['excludeTags'], 'excludeTags');
  return {
    pools: parsePools(selection, mode),
    mode,
    vms: stringList(selection['vms'], 'vms') ?? [],
    smart: {
      ...(tags !== undefined ? { tags } : {}),
      ...(excludeTags !== undefined ? { excludeTags } : {}),
      ...(power === 'running' || power === 'halted' || power === 'any' ? { powerState: power } : {}),
      ...(typeof pattern === 'string' ? { namePattern: pattern } : {}),
    },
  };
}
