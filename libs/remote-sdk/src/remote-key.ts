/** Longest key accepted: S3 and Azure both allow 1024 bytes; file systems need room for temp names. */
export const MAX_KEY_BYTES = 1000;

/** Segments starting with this are the drivers' own (temporary files during atomic puts). */
export const RESERVED_SEGMENT_PREFIX = '.haven-tmp';

/**
 * Why `key` is not a valid object key, or undefined when it is. A key is relative, '/'-separated,
 * without empty, '.' or '..' segments, so that it maps safely onto folders and object names alike.
 */
export function keyProblem(key: string): string | undefined {
  if (typeof key !== 'string' || key.length === 0) return 'the key is empty';
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) return `the key is longer than ${MAX_KEY_BYTES} bytes`;
  if (key.startsWith('/')) return 'the key must be relative (it starts with "/")';
  if (key.endsWith('/')) return 'the key ends with "/" (objects are not folders)';
  if (key.includes('\\')) return 'the key contains a backslash';
  if (/[\u0000-\u001f\u007f]/.test(key)) return 'the key contains a control character';
  for (const segment of key.split('/')) {
    if (segment === '') return 'the key has an empty segment ("//")';
    if (segment === '.' || segment === '..') return `the key has a "${segment}" segment`;
    if (segment.startsWith(RESERVED_SEGMENT_PREFIX))
      return `segments starting with "${RESERVED_SEGMENT_PREFIX}" are reserved for temporary files`;
  }
  return undefined;
}

/** Like keyProblem, for a list prefix: may be empty and may end with '/' or in mid-segment. */
export function prefixProblem(prefix: string): string | undefined {
  if (prefix === '') return undefined;
  const trimmed = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  if (trimmed === '') return 'the prefix "/" is not relative; use "" to list everything';
  if (trimmed.endsWith('/')) return 'the prefix has an empty segment ("//")';
  return keyProblem(trimmed)?.replace('the key', 'the prefix');
}
