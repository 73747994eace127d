import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { scratchDir } from '../scratch';
import { freeLoopbackPort, loopbackPortOpen } from './loopback-port';

export interface SambaServer {
  host: string;
  port: number;
  share: string;
  /** The share's folder on this machine (tests can check files directly). */
  sharePath: string;
  username: string;
  password: string;
  /** Workgroup of the server, usable as the user's domain. */
  domain: string;
  stop(): Promise<void>;
  /** Kills smbd (SIGKILL to its process group) to test a server dying mid-operation. */
  kill(): Promise<void>;
  /** Ends the per-connection smbd processes (by pid): every client loses its connection. */
  dropConnections(): void;
}

/**
 * smbd with a private smb.conf on a free 127.0.0.1 port, one share and one user (root, mapped to
 * a fresh password in a private passdb: no system account is created).
 */
export async function startSamba(options: { requireSigning?: boolean } = {}): Promise<SambaServer> {
  const folder = await scratchDir('haven-samba-');
  const dirs = ['share', 'private', 'lock', 'state', 'cache', 'pid', 'ncalrpc'];
  for (const dir of dirs) await mkdir(join(folder.path, dir));
  const port = await freeLoopbackPort();
  const config = join(folder.path, 'smb.conf');
  const domain = 'HAVENTEST';
  await writeFile(
    config,
    `[global]
  interfaces = 127.0.0.1
  bind interfaces only = yes
  smb ports = ${port}
  disable netbios = yes
  workgroup = ${domain}
  server signing = ${options.requireSigning === true ? 'mandatory' : 'default'}
  private dir = ${folder.path}/private
  lock directory = ${folder.path}/lock
  state directory = ${folder.path}/state
  cache directory = ${folder.path}/cache
  pid directory = ${folder.path}/pid
  ncalrpc dir = ${folder.path}/ncalrpc
  passdb backend = tdbsam:${folder.path}/private/passdb.tdb
  server min protocol = SMB2_02
  load printers = no
  printing = bsd
  printcap name = /dev/null
  log level = 0
[backup]
  path = ${folder.path}/share
  read only = no
`,
  );
  const username = 'root';
  const password = `Pw-${randomBytes(9).toString('base64url')}`;
  const added = spawnSync('smbpasswd', ['-c', config, '-s', '-a', username], {
    input: `${password}\n${password}\n`,
    timeout: 15_000,
  });
  if (added.status !== 0) throw new Error(`smbpasswd failed: ${added.stderr.toString()}`);
  let child: ChildProcess | null = spawn(
    'smbd',
    ['--foreground', '--no-process-group', `--configfile=${config}`, '--debug-stdout'],
    { stdio: 'ignore', detached: true },
  );
  const deadline = Date.now() + 20_000;
  while (!(await loopbackPortOpen(port))) {
    if (child.exitCode !== null) throw new Error(`smbd exited at start (code ${child.exitCode})`);
    if (Date.now() > deadline) throw new Error('smbd not ready after 20 s');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    const running = child;
    child = null;
    if (running === null || running.exitCode !== null || running.pid === undefined) return;
    // smbd runs as the leader of its own process group (spawned detached): on shutdown it signals
    // that group, which must not be ours, and its per-connection children go with the group.
    const exited = new Promise((resolve) => running.once('exit', resolve));
    try {
      process.kill(-running.pid, signal);
    } catch {
      // already gone
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 10_000)))]);
    clearTimeout(timer);
  };
  return {
    host: '127.0.0.1',
    port,
    share: 'backup',
    sharePath: join(folder.path, 'share'),
    username,
    password,
    domain,
    stop: async () => {
      await halt('SIGTERM');
      await folder.cleanup();
    },
    kill: () => halt('SIGKILL'),
    dropConnections: () => {
      const pid = child?.pid;
      if (pid === undefined) return;
      // Children of the main smbd: the per-connection servers and smbd's own helpers
      // (notifyd, cleanupd); the main smbd restarts helpers it needs.
      const listed = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout;
      for (const childPid of listed.split('\n').filter(Boolean).map(Number)) {
        try {
          process.kill(childPid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    },
  };
}
