/**
 * Integration suites run against real services. When a service is missing the suite is skipped
 * with one line naming what to install, except under CI=true where a missing service is a failure:
 * CI must never pass by skipping.
 */
export type TestService =
  | 'postgres'
  | 'nats'
  | 'nats-server'
  | 'qemu-img'
  | 'samba'
  | 'nfs-ganesha'
  | 'restic'
  | 'libnfs'
  | 'e2fsprogs'
  | 'tmpfs'
  | 'zstd'
  | 'b3sum';

const INSTALL_HINT: Record<TestService, string> = {
  postgres: 'a PostgreSQL server on HAVEN_TEST_DATABASE_URL (apt-get install postgresql)',
  nats: 'a NATS server with JetStream on HAVEN_TEST_NATS_URL (apt-get install nats-server; nats-server -js)',
  'nats-server':
    'the nats-server binary, for suites that stop and restart a private server (apt-get install nats-server)',
  'qemu-img': 'qemu-img (apt-get install qemu-utils)',
  samba: 'smbd (apt-get install samba smbclient)',
  'nfs-ganesha': 'ganesha.nfsd (apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind)',
  restic: 'restic (apt-get install restic)',
  libnfs: 'nfs-cp (apt-get install libnfs-utils)',
  e2fsprogs: 'mke2fs (apt-get install e2fsprogs)',
  zstd: 'the zstd command-line tool, the oracle for zstd-compressed XVA (apt-get install zstd)',
  b3sum: 'b3sum, the BLAKE3 reference implementation, the oracle for BLAKE3 chunk ids (apt-get install b3sum)',
  tmpfs: 'permission to mount a small tmpfs (run the tests as root, or in a container with CAP_SYS_ADMIN)',
};

export function isServiceAvailable(service: TestService): boolean {
  return (process.env['HAVEN_TEST_SERVICES'] ?? '').split(',').includes(service);
}

export function isCi(): boolean {
  const ci = process.env['CI'];
  return ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0';
}

/** `describe` that runs only when every named service is present (and fails in CI when one is not). */
export function describeIntegration(name: string, services: readonly TestService[], body: () => void): void {
  const missing = services.filter((service) => !isServiceAvailable(service));
  if (missing.length === 0) {
    describe(name, body);
    return;
  }
  const reason = `needs ${missing.map((service) => INSTALL_HINT[service]).join(' and ')}`;
  if (isCi()) {
    describe(name, () => {
      it(`has its services (${missing.join(', ')})`, () => {
        throw new Error(`${name} ${reason}; CI=true forbids skipping integration suites`);
      });
    });
    return;
  }
  process.stdout.write(`[skip] ${name}: ${reason}\n`);
  describe.skip(name, body);
}

export function testDatabaseUrl(): string {
  return process.env['HAVEN_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
}

export function testNatsUrl(): string {
  return process.env['HAVEN_TEST_NATS_URL'] ?? 'nats://127.0.0.1:4222';
}
