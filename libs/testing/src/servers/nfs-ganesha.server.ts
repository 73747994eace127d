import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { scratchDir } from '../scratch';
import { freeLoopbackPort, loopbackPortOpen } from './loopback-port';

export interface NfsGaneshaServer {
  host: string;
  nfsPort: number;
  mountPort: number;
  /** Export path to give MOUNT (a folder on this machine: tests can look at it directly). */
  exportPath: string;
  /** Stops ganesha (by pid) and removes its folder; restart() brings it back on the same ports. */
  stop(): Promise<void>;
  /** Kills the server (SIGKILL) without cleaning up, to test a server dying mid-operation. */
  kill(): Promise<void>;
  restart(): Promise<void>;
}

function rpcbindRunning(): boolean {
  return spawnSync('rpcinfo', ['-p', '127.0.0.1'], { stdio: 'ignore', timeout: 5000 }).status === 0;
}

/** rpcbind started by this process (in the foreground, so its pid is known), and its users. */
let rpcbind: ChildProcess | null = null;
let rpcbindUsers = 0;

async function acquireRpcbind(): Promise<void> {
  rpcbindUsers += 1;
  if (rpcbind !== null || rpcbindRunning()) return;
  rpcbind = spawn('rpcbind', ['-w', '-f'], { stdio: 'ignore' });
  await waitFor(() => Promise.resolve(rpcbindRunning()), 10_000, 'rpcbind');
}

/** Stops rpcbind when this process started it and no server of this process needs it any more. */
async function releaseRpcbind(): Promise<void> {
  rpcbindUsers -= 1;
  const running = rpcbind;
  if (rpcbindUsers > 0 || running === null) return;
  rpcbind = null;
  if (running.exitCode !== null || running.pid === undefined) return;
  const exited = new Promise((resolve) => running.once('exit', resolve));
  process.kill(running.pid, 'SIGTERM');
  await exited;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms`);
}

/**
 * nfs-ganesha (VFS backend, NFSv3 over TCP) on free 127.0.0.1 ports with a private config and
 * export folder. rpcbind is needed for ganesha's registrations; when none runs, one is started
 * and stopped again with the last server of this process.
 */
export async function startNfsGanesha(): Promise<NfsGaneshaServer> {
  const folder = await scratchDir('haven-ganesha-');
  const exportPath = join(folder.path, 'export');
  await mkdir(exportPath);
  const [nfsPort, mountPort] = [await freeLoopbackPort(), await freeLoopbackPort()];
  const config = join(folder.path, 'ganesha.conf');
  const log = join(folder.path, 'ganesha.log');
  await writeFile(
    config,
    `NFS_CORE_PARAM { Protocols = 3; NFS_Port = ${nfsPort}; MNT_Port = ${mountPort}; Bind_addr = 127.0.0.1; Enable_NLM = false; Enable_RQUOTA = false; }
NFSV4 { Graceless = true; RecoveryBackend = fs; }
NFS_KRB5 { Active_krb5 = false; }
EXPORT { Export_Id = 1; Path = ${exportPath}; Pseudo = /backup; Access_Type = RW; Squash = No_Root_Squash; Protocols = 3; Transports = TCP; SecType = sys; FSAL { Name = VFS; } }
`,
  );
  await acquireRpcbind();
  let child: ChildProcess | null = null;
  const start = async (): Promise<void> => {
    const started = spawn(
      'ganesha.nfsd',
      ['-F', '-f', config, '-L', log, '-p', join(folder.path, 'ganesha.pid'), '-N', 'NIV_EVENT'],
      { stdio: 'ignore' },
    );
    child = started;
    let exited = false;
    started.once('exit', () => {
      exited = true;
    });
    await waitFor(
      async () => {
        if (exited) throw new Error(`ganesha.nfsd exited at start; see ${log}`);
        const text = await readFile(log, 'utf8').catch(() => '');
        return (
          text.includes('NFS SERVER INITIALIZED') &&
          (await loopbackPortOpen(nfsPort)) &&
          (await loopbackPortOpen(mountPort))
        );
      },
      30_000,
      'nfs-ganesha',
    );
  };
  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    const running = child;
    child = null;
    if (running === null || running.exitCode !== null || running.pid === undefined) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    process.kill(running.pid, signal);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 10_000)))]);
    clearTimeout(timer);
    const stillRunning = (): boolean => running.exitCode === null && running.signalCode === null;
    if (stillRunning()) process.kill(running.pid, 'SIGKILL');
  };
  await start();
  return {
    host: '127.0.0.1',
    nfsPort,
    mountPort,
    exportPath,
    stop: async () => {
      await halt('SIGTERM');
      await releaseRpcbind();
      await folder.cleanup();
    },
    kill: () => halt('SIGKILL'),
    restart: async () => {
      await halt('SIGTERM');
      await start();
    },
  };
}
