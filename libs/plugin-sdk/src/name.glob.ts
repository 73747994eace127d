/**
 * A glob over names (of VMs, of pools in a job's selection): `*` any run of characters, `?` one
 * character, everything else literal. Shared by the gateway, which checks a job's patterns, and
 * the planners, which apply them.
 */
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
