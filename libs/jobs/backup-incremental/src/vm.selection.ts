import { HAVEN_MANAGED_KEY, type VmInfo } from '@haven/xapi';
import { BackupJobError } from './backup-incremental.errors';

/** The tag an operator sets on a VM that must never be backed up, whatever the job says. */
export const NO_BACKUP_TAG = 'no-backup';

export interface SmartSelection {
  tags?: readonly string[];
  excludeTags?: readonly string[];
  powerState?: 'running' | 'halted' | 'any';
  namePattern?: string;
}

/** A glob over VM names: `*` any run of characters, `?` one character, everything else literal. */
export function globMatcher(pattern: string): (name: string) => boolean {
  let source = '';
  for (const char of pattern) {
    if (char === '*') source += '.*';
    else if (char === '?') source += '.';
    else source += char.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  const regex = new RegExp(`^${source}$`, 'u');
  return (name) => regex.test(name);
}

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

/** Reads a job's stored selection (validated by the gateway) into typed form. */
export function parseSelection(selection: Record<string, unknown>): {
  poolId: string;
  mode: 'explicit' | 'smart';
  vms: string[];
  smart: SmartSelection;
} {
  const poolId = selection['poolId'];
  const mode = selection['mode'];
  if (typeof poolId !== 'string' || poolId === '') {
    throw new BackupJobError(
      'INVALID_SELECTION',
      'job selection has no "poolId"; edit the job and choose a pool',
    );
  }
  if (mode !== 'explicit' && mode !== 'smart') {
    throw new BackupJobError('INVALID_SELECTION', 'job selection "mode" must be "explicit" or "smart"');
  }
  const power = selection['powerState'];
  const pattern = selection['namePattern'];
  const tags = stringList(selection['tags'], 'tags');
  const excludeTags = stringList(selection['excludeTags'], 'excludeTags');
  return {
    poolId,
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
