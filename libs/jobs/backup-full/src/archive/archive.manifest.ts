import { ArchiveError } from './archive.errors';

export const ARCHIVE_FORMAT = 'haven-full-archive';
export const ARCHIVE_FORMAT_VERSION = 1;

export type ArchiveCompression = 'none' | 'gzip' | 'zstd';

export interface ArchiveSegment {
  /** Plaintext bytes (XVA stream bytes) in this segment. */
  size: number;
  /** Bytes of the stored object (plaintext plus the seal's header, nonce and tag when encrypted). */
  storedSize: number;
  /** SHA-256 of the plaintext, hex. */
  sha256: string;
}

/** A network interface of the VM at backup time (the XVA holds it too; recorded to report how it was restored). */
export interface ArchiveVif {
  device: string;
  mac: string;
  networkUuid: string;
  networkName: string;
}

/** What an archive holds; see docs/repository-format.md, "Full-backup archives". */
export interface ArchiveManifest {
  format: typeof ARCHIVE_FORMAT;
  version: typeof ARCHIVE_FORMAT_VERSION;
  id: string;
  vm: { uuid: string; name: string; record?: Record<string, unknown>; vifs?: ArchiveVif[] };
  tenant?: string;
  job?: { id: string; name: string };
  schedule?: { id: string; name: string };
  /** The task that wrote it: a redelivered task finds its committed archive by it. */
  taskId?: string;
  /** When the VM snapshot the archive was exported from was taken. */
  takenAt: string;
  /** When the archive was committed. */
  createdAt: string;
  /** Host-side compression of the XVA stream. */
  compression: ArchiveCompression;
  encrypted: boolean;
  segmentSize: number;
  segments: ArchiveSegment[];
  /** Bytes of the XVA stream (sum of the segments' sizes). */
  totalSize: number;
  storedSize: number;
  gfsTags?: string[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses and checks a manifest's JSON; anything malformed is MANIFEST_DAMAGED naming the field. */
export function parseArchiveManifest(json: Buffer, key: string, expectedId?: string): ArchiveManifest {
  const damaged = (reason: string): ArchiveError =>
    new ArchiveError('MANIFEST_DAMAGED', `archive manifest ${key} is damaged: ${reason}`, key);
  let value: unknown;
  try {
    value = JSON.parse(json.toString('utf8'));
  } catch (error) {
    throw damaged(`not JSON (${(error as Error).message})`);
  }
  if (!isRecord(value)) throw damaged('not a JSON object');
  if (value['format'] !== ARCHIVE_FORMAT) throw damaged(`format is not "${ARCHIVE_FORMAT}"`);
  if (value['version'] !== ARCHIVE_FORMAT_VERSION)
    throw damaged(
      `version ${String(value['version'])} is not supported (this build reads ${ARCHIVE_FORMAT_VERSION})`,
    );
  const text = (field: string, from: Record<string, unknown> = value, path = field): string => {
    const item = from[field];
    if (typeof item !== 'string' || item === '') throw damaged(`${path} is missing or not a string`);
    return item;
  };
  const count = (field: string, from: Record<string, unknown>, path: string): number => {
    const item = from[field];
    if (typeof item !== 'number' || !Number.isSafeInteger(item) || item < 0)
      throw damaged(`${path} is not a byte count`);
    return item;
  };
  const id = text('id');
  if (expectedId !== undefined && id !== expectedId)
    throw damaged(`it names archive ${id}, stored as ${expectedId}`);
  const vm = value['vm'];
  if (!isRecord(vm)) throw damaged('vm is missing');
  const compression = value['compression'];
  if (compression !== 'none' && compression !== 'gzip' && compression !== 'zstd')
    throw damaged('compression is not none, gzip or zstd');
  const segments = value['segments'];
  if (!Array.isArray(segments)) throw damaged('segments is not a list');
  const parsedSegments = segments.map((segment: unknown, index): ArchiveSegment => {
    if (!isRecord(segment)) throw damaged(`segments[${index}] is not an object`);
    const sha256 = text('sha256', segment, `segments[${index}].sha256`);
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw damaged(`segments[${index}].sha256 is not a SHA-256`);
    return {
      size: count('size', segment, `segments[${index}].size`),
      storedSize: count('storedSize', segment, `segments[${index}].storedSize`),
      sha256,
    };
  });
  const totalSize = count('totalSize', value, 'totalSize');
  if (parsedSegments.reduce((sum, segment) => sum + segment.size, 0) !== totalSize)
    throw damaged('totalSize is not the sum of the segment sizes');
  const reference = (field: string): { id: string; name: string } | undefined => {
    const item = value[field];
    if (item === undefined) return undefined;
    if (!isRecord(item)) throw damaged(`${field} is not an object`);
    return { id: text('id', item, `${field}.id`), name: text('name', item, `${field}.name`) };
  };
  const job = reference('job');
  const schedule = reference('schedule');
  const tenant = value['tenant'];
  const taskId = value['taskId'];
  const gfsTags = value['gfsTags'];
  const record = vm['record'];
  const vifs = vm['vifs'];
  const isVif = (item: unknown): item is ArchiveVif =>
    isRecord(item) &&
    ['device', 'mac', 'networkUuid', 'networkName'].every((field) => typeof item[field] === 'string');
  return {
    format: ARCHIVE_FORMAT,
    version: ARCHIVE_FORMAT_VERSION,
    id,
    vm: {
      uuid: text('uuid', vm, 'vm.uuid'),
      name: typeof vm['name'] === 'string' ? vm['name'] : '',
      ...(isRecord(record) ? { record } : {}),
      ...(Array.isArray(vifs) ? { vifs: vifs.filter(isVif) } : {}),
    },
    ...(typeof tenant === 'string' ? { tenant } : {}),
    ...(job !== undefined ? { job } : {}),
    ...(schedule !== undefined ? { schedule } : {}),
    ...(typeof taskId === 'string' ? { taskId } : {}),
    takenAt: text('takenAt'),
    createdAt: text('createdAt'),
    compression,
    encrypted: value['encrypted'] === true,
    segmentSize: count('segmentSize', value, 'segmentSize'),
    segments: parsedSegments,
    totalSize,
    storedSize: count('storedSize', value, 'storedSize'),
    ...(Array.isArray(gfsTags) ? { gfsTags: gfsTags.filter((tag) => typeof tag === 'string') } : {}),
  };
}
