/**
 * The "a Haven run is working on this VM" marker kept in the VM's other_config, so that two Haven
 * installations (which share no database) never back up one VM at once.
 */
export interface VmMarker {
  /** Who holds it, as shown to the other side: installation and run, e.g. `haven@site-a run 42`. */
  owner: string;
  /** After this instant the holder is presumed dead and the marker may be taken over. */
  until: Date;
}

export const MARKER_PREFIX = 'haven:';

export function markerKey(key: string): string {
  if (!/^[a-z0-9][a-z0-9._-]*$/i.test(key)) {
    throw new TypeError(`marker key "${key}" must be letters, digits, '.', '_' or '-'`);
  }
  return `${MARKER_PREFIX}${key}`;
}

export function encodeVmMarker(marker: VmMarker): string {
  return JSON.stringify({ owner: marker.owner, until: marker.until.toISOString() });
}

/**
 * Reads a marker value; anything unreadable counts as absent (a hand-edited or foreign value must
 * not block backups forever).
 */
export function decodeVmMarker(value: string | undefined): VmMarker | undefined {
  if (value === undefined || value === '') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { owner, until } = parsed as { owner?: unknown; until?: unknown };
  if (typeof owner !== 'string' || typeof until !== 'string') return undefined;
  const date = new Date(until);
  return Number.isNaN(date.getTime()) ? undefined : { owner, until: date };
}
