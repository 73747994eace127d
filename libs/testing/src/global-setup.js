// Probes, once per test run, which real services and tools this machine offers, and hands the
// answer to every test worker through HAVEN_TEST_SERVICES. Suites then run or skip (fail, in CI)
// through describeIntegration().
'use strict';
const net = require('node:net');
const { execFileSync } = require('node:child_process');

function tcpOpen(host, port, timeoutMs = 1500) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function hasBinary(name) {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// Full-disk tests mount a tiny tmpfs: needs root (or CAP_SYS_ADMIN).
function canMountTmpfs() {
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'haven-tmpfs-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'ignore' });
    execFileSync('umount', [dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    fs.rmdirSync(dir);
  }
}

function hostPort(url, defaultPort) {
  const u = new URL(url);
  return [u.hostname, Number(u.port || defaultPort)];
}

module.exports = async function globalSetup() {
  process.env.HAVEN_TEST_DATABASE_URL ??= 'postgres://postgres@127.0.0.1:5432/postgres';
  process.env.HAVEN_TEST_NATS_URL ??= 'nats://127.0.0.1:4222';
  const available = [];
  if (await tcpOpen(...hostPort(process.env.HAVEN_TEST_DATABASE_URL, 5432))) available.push('postgres');
  if (await tcpOpen(...hostPort(process.env.HAVEN_TEST_NATS_URL.replace(/^nats:/, 'http:'), 4222)))
    available.push('nats');
  for (const [service, binary] of [
    ['qemu-img', 'qemu-img'],
    // The SMB and NFS suites also drive smbclient/smbpasswd and rpcbind.
    ['samba', ['smbd', 'smbclient', 'smbpasswd']],
    ['nfs-ganesha', ['ganesha.nfsd', 'rpcbind']],
    ['restic', 'restic'],
    ['nats-server', 'nats-server'],
    ['libnfs', 'nfs-cp'],
    ['e2fsprogs', 'mke2fs'],
    ['zstd', 'zstd'],
    ['b3sum', 'b3sum'],
  ]) {
    if ([].concat(binary).every(hasBinary)) available.push(service);
  }
  if (canMountTmpfs()) available.push('tmpfs');
  process.env.HAVEN_TEST_SERVICES = available.join(',');
};
