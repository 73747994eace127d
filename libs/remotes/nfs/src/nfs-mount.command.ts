import { createHash } from 'node:crypto';
import { join } from 'node:path';

/** A mount setting Haven refuses to pass to mount(8). */
export class NfsMountOptionError extends Error {
  override readonly name = 'NfsMountOptionError';
  readonly code = 'NFS_MOUNT_OPTION_INVALID';

  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

const FLAG_OPTIONS = new Set([
  'hard',
  'soft',
  'ro',
  'rw',
  'sync',
  'async',
  'ac',
  'noac',
  'cto',
  'nocto',
  'lock',
  'nolock',
  'noatime',
  'nodiratime',
  'relatime',
  'sharecache',
  'nosharecache',
  'resvport',
  'noresvport',
  'intr',
  'nointr',
  'tcp',
  'udp',
]);

const INTEGER = /^[0-9]{1,9}$/;
const VALUED_OPTIONS: Record<string, RegExp | undefined> = {
  vers: /^(3|4|4\.0|4\.1|4\.2)$/,
  nfsvers: /^(3|4|4\.0|4\.1|4\.2)$/,
  proto: /^(tcp|tcp6|rdma)$/,
  mountproto: /^(tcp|tcp6)$/,
  port: INTEGER,
  mountport: INTEGER,
  rsize: INTEGER,
  wsize: INTEGER,
  timeo: INTEGER,
  retrans: INTEGER,
  retry: INTEGER,
  actimeo: INTEGER,
  acregmin: INTEGER,
  acregmax: INTEGER,
  acdirmin: INTEGER,
  acdirmax: INTEGER,
  nconnect: /^([1-9]|1[0-6])$/,
  sec: /^(sys|krb5|krb5i|krb5p)$/,
  lookupcache: /^(all|none|pos|positive)$/,
  local_lock: /^(none|all|flock|posix)$/,
  clientaddr: /^[0-9A-Fa-f.:]{2,45}$/,
};

/**
 * Checks mount options one by one against an allow-list: flags (`hard`, `noatime`, …) and
 * `name=value` options whose value has a fixed shape. Anything else — unknown names, separators,
 * spaces, shell characters — is refused, naming the option. Returns the options unchanged.
 */
export function validateNfsMountOptions(options: readonly string[]): string[] {
  return options.map((option, index) => {
    const field = `options[${index}]`;
    if (typeof option !== 'string' || option.length === 0) {
      throw new NfsMountOptionError(field, `mount option ${index + 1} is empty`);
    }
    if (!/^[a-z_]+(=[A-Za-z0-9.:]+)?$/.test(option)) {
      throw new NfsMountOptionError(
        field,
        `mount option "${option}" contains characters that are not allowed (only name or name=value with letters, digits, "." and ":")`,
      );
    }
    const equals = option.indexOf('=');
    const name = equals < 0 ? option : option.slice(0, equals);
    const value = equals < 0 ? undefined : option.slice(equals + 1);
    if (value === undefined) {
      if (!FLAG_OPTIONS.has(name)) {
        throw new NfsMountOptionError(
          field,
          `mount option "${name}" is not supported; allowed flags: ${[...FLAG_OPTIONS].join(', ')}`,
        );
      }
      return option;
    }
    const shape = VALUED_OPTIONS[name];
    if (shape === undefined) {
      throw new NfsMountOptionError(
        field,
        `mount option "${name}=" is not supported; allowed: ${Object.keys(VALUED_OPTIONS).join(', ')}`,
      );
    }
    if (!shape.test(value)) {
      throw new NfsMountOptionError(field, `mount option "${name}" has an invalid value "${value}"`);
    }
    return option;
  });
}

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV6 = /^\[[0-9A-Fa-f:.]{2,45}\]$/;
const EXPORT_PATH = /^\/[A-Za-z0-9._@+\-/]*$/;

export function validateNfsHost(host: string): string {
  if (typeof host !== 'string' || !(HOSTNAME.test(host) || IPV6.test(host))) {
    throw new NfsMountOptionError(
      'host',
      `NFS host ${JSON.stringify(host)} is not a host name, an IPv4 address or a bracketed IPv6 address`,
    );
  }
  return host;
}

export function validateNfsExport(exportPath: string): string {
  if (
    typeof exportPath !== 'string' ||
    !EXPORT_PATH.test(exportPath) ||
    exportPath.split('/').includes('..')
  ) {
    throw new NfsMountOptionError(
      'export',
      `NFS export ${JSON.stringify(exportPath)} must be an absolute path of letters, digits and . _ @ + - / (no "..", spaces or separators)`,
    );
  }
  return exportPath;
}

export interface NfsMountCommandInput {
  host: string;
  export: string;
  options?: readonly string[];
  /** Folder under which Haven creates one mount point per remote. */
  mountRoot: string;
}

export interface NfsMountCommand {
  /** Where the export is mounted: `<mountRoot>/nfs-<hash of server:/export>`. */
  mountPoint: string;
  /** Program and arguments for execFile (never a shell). */
  mount: { file: 'mount'; args: string[] };
  unmount: { file: 'umount'; args: string[] };
}

/** The validated `mount -t nfs -o … server:/export <dir>` invocation for a remote. */
export function buildNfsMountCommand(input: NfsMountCommandInput): NfsMountCommand {
  const host = validateNfsHost(input.host);
  const exportPath = validateNfsExport(input.export);
  const options = validateNfsMountOptions(input.options ?? []);
  if (!input.mountRoot.startsWith('/')) {
    throw new NfsMountOptionError(
      'mountRoot',
      `the mount folder "${input.mountRoot}" must be an absolute path`,
    );
  }
  const source = `${host}:${exportPath}`;
  const mountPoint = join(
    input.mountRoot,
    `nfs-${createHash('sha256').update(source).digest('hex').slice(0, 16)}`,
  );
  // Default to NFSv3 over TCP, hard mounts: a backup must block, not silently fail, on a hiccup.
  const names = new Set(options.map((option) => option.split('=')[0]));
  const effective = [...options];
  if (!names.has('vers') && !names.has('nfsvers')) effective.push('vers=3');
  if (!names.has('hard') && !names.has('soft')) effective.push('hard');
  if (!names.has('proto') && !names.has('tcp') && !names.has('udp')) effective.push('proto=tcp');
  const args = ['-t', 'nfs', '-o', effective.join(','), source, mountPoint];
  return { mountPoint, mount: { file: 'mount', args }, unmount: { file: 'umount', args: [mountPoint] } };
}
