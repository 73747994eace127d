import { execFile } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';

import { LocalDriver } from '@haven/remote-local';
import {
  DriverError,
  type DriverContext,
  type ErrorClassification,
  type ListPage,
  type ObjectStat,
  type RemoteCapacity,
  type RemoteDriver,
  type RemoteFeatures,
} from '@haven/remote-sdk';

import { buildNfsMountCommand, type NfsMountCommand, type NfsMountCommandInput } from './nfs-mount.command';

const run = promisify(execFile);

/**
 * Kernel NFS: mounts `server:/export` on a managed folder (at first use, needs root), then is the
 * local driver over that folder. Only the command building is tested here: our machines have no
 * kernel NFS client.
 */
export class NfsMountDriver implements RemoteDriver {
  readonly type = 'nfs';
  readonly features: RemoteFeatures = {
    atomicPutIfAbsent: true,
    atomicRename: true,
    capacity: true,
    // Lists through a LocalDriver on the mount point: a stat per listed file.
    listingStatsEachObject: true,
  };
  private readonly command: NfsMountCommand;
  private readonly local: RemoteDriver;
  private mounting: Promise<void> | null = null;
  private mountedHere = false;
  /** The remote's folder inside the export (the mount point itself without `path`). */
  private readonly inside: string;

  constructor(input: NfsMountCommandInput & { path?: string }) {
    this.command = buildNfsMountCommand(input);
    this.inside = input.path
      ? `${this.command.mountPoint}/${input.path.replace(/^\/+/, '')}`
      : this.command.mountPoint;
    this.local = new LocalDriver({ path: this.inside });
  }

  get mountPoint(): string {
    return this.command.mountPoint;
  }

  async put(key: string, body: Buffer | Readable, context: DriverContext & { size?: number }): Promise<void> {
    await this.ensureMounted();
    return this.local.put(key, body, context);
  }

  async putIfAbsent(key: string, body: Buffer, context: DriverContext): Promise<boolean> {
    await this.ensureMounted();
    return this.local.putIfAbsent(key, body, context);
  }

  async get(
    key: string,
    context: DriverContext & { range?: { start: number; end: number } },
  ): Promise<Readable> {
    await this.ensureMounted();
    return this.local.get(key, context);
  }

  async stat(key: string, context: DriverContext): Promise<ObjectStat> {
    await this.ensureMounted();
    return this.local.stat(key, context);
  }

  async list(prefix: string, context: DriverContext & { cursor?: string; limit: number }): Promise<ListPage> {
    await this.ensureMounted();
    return this.local.list(prefix, context);
  }

  async delete(key: string, context: DriverContext): Promise<void> {
    await this.ensureMounted();
    return this.local.delete(key, context);
  }

  async copy(fromKey: string, toKey: string, context: DriverContext): Promise<void> {
    await this.ensureMounted();
    return this.local.copy(fromKey, toKey, context);
  }

  async rename(fromKey: string, toKey: string, context: DriverContext): Promise<void> {
    await this.ensureMounted();
    if (this.local.rename === undefined) throw new DriverError('UNKNOWN', 'the local driver has no rename');
    return this.local.rename(fromKey, toKey, context);
  }

  async capacity(context: DriverContext): Promise<RemoteCapacity> {
    await this.ensureMounted();
    return this.local.capacity(context);
  }

  classifyError(error: unknown): ErrorClassification | undefined {
    return this.local.classifyError(error);
  }

  async close(): Promise<void> {
    await this.local.close();
    if (!this.mountedHere) return;
    this.mountedHere = false;
    this.mounting = null;
    await run(this.command.unmount.file, this.command.unmount.args);
  }

  private ensureMounted(): Promise<void> {
    if (this.mounting === null) {
      const mounting = this.mount();
      this.mounting = mounting;
      mounting.catch(() => {
        if (this.mounting === mounting) this.mounting = null;
      });
    }
    return this.mounting;
  }

  private async mount(): Promise<void> {
    if (!(await isMountPoint(this.command.mountPoint))) await this.mountExport();
    // `path` inside the export is created as the userspace driver does: the export is mounted
    // (the local driver never creates its own folder, which is meant for shares mounted by others).
    await mkdir(this.inside, { recursive: true });
  }

  private async mountExport(): Promise<void> {
    await mkdir(this.command.mountPoint, { recursive: true });
    try {
      await run(this.command.mount.file, this.command.mount.args, { timeout: 60_000 });
      this.mountedHere = true;
    } catch (error) {
      const raw = (error as { stderr?: unknown }).stderr;
      const stderr = (typeof raw === 'string' ? raw : Buffer.isBuffer(raw) ? raw.toString() : '').trim();
      const code = /permission denied|access denied|only root/i.test(stderr)
        ? 'PERMISSION_DENIED'
        : 'TRANSIENT';
      throw new DriverError(
        code,
        `mounting ${this.command.mount.args[4] ?? 'the export'} on ${this.command.mountPoint} failed: ${stderr || (error as Error).message}`,
        { cause: error },
      );
    }
  }
}

async function isMountPoint(path: string): Promise<boolean> {
  const table = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  // Field 5 of mountinfo is the mount point, with spaces escaped as \040.
  return table.split('\n').some((line) => line.split(' ')[4]?.replace(/\\040/g, ' ') === path);
}
