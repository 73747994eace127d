import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';

import {
  bodyBlocks,
  compareKeys,
  pipelinedRead,
  DriverError,
  RESERVED_SEGMENT_PREFIX,
  type DriverContext,
  type ErrorClassification,
  type ListPage,
  type ObjectStat,
  type RemoteCapacity,
  type RemoteDriver,
  type RemoteFeatures,
} from '@haven/remote-sdk';

import { MountClient, MountError, MOUNT_PROGRAM, MOUNT_VERSION } from './mount.client';
import {
  Nfs3Client,
  Nfs3FileType,
  NFS_PROGRAM,
  NFS_VERSION,
  type Nfs3Attributes,
  type Nfs3Stable,
} from './nfs3.client';
import { Nfs3Error, Nfs3Status, remoteErrorCodeForNfsStatus } from './nfs3.status';
import { lookupRpcPort } from './portmap.client';
import { RpcError } from './rpc.errors';
import type { RpcCredentials } from './rpc.transport';

export interface NfsUserspaceSettings {
  host: string;
  /** Exported path as the server's MOUNT service knows it (`/srv/backups`). */
  export: string;
  /** Folder inside the export holding this remote's objects (created when missing). */
  path?: string;
  /** Skip the portmapper when given. */
  nfsPort?: number;
  mountPort?: number;
  portmapPort?: number;
  uid: number;
  gid: number;
  gids?: readonly number[];
  /** Bytes per READ / WRITE call (capped by the server's FSINFO maxima). */
  ioSize: number;
  /** READ / WRITE calls in flight per object. */
  concurrency: number;
  /** `unstable` writes + COMMIT (fast); `file-sync` makes every WRITE durable on its own. */
  stable: Extract<Nfs3Stable, 'unstable' | 'file-sync'>;
  timeoutMs: number;
  /** How long the previous version of an overwritten object stays readable for open readers. */
  overwriteGraceMs: number;
  /** list() removes `.haven-tmp-*` files older than this (left by writers that died); 0: never. */
  staleTemporaryMs: number;
}

interface Session {
  client: Nfs3Client;
  root: Buffer;
  ioSize: number;
}

interface ResolvedObject {
  handle: Buffer;
  attributes: Nfs3Attributes;
}

/**
 * RemoteDriver over the user-space NFSv3 client: objects are files under `path` inside the
 * export, a key's '/' separators are folders. Atomic put writes `.haven-tmp-*` beside the target,
 * commits it and RENAMEs it over the key; putIfAbsent LINKs the committed temporary to the key,
 * which the server refuses with EXIST when the key is taken.
 */
export class NfsUserspaceDriver implements RemoteDriver {
  readonly type = 'nfs';
  readonly features: RemoteFeatures = { atomicPutIfAbsent: true, atomicRename: true, capacity: true };
  private session: Promise<Session> | null = null;
  private mountClient: MountClient | null = null;
  /** Folder path ('' for the base folder) -> handle; cleared when a handle goes stale. */
  private readonly folders = new Map<string, Promise<Buffer>>();
  /** Old versions of overwritten objects, removed when their grace period ends (or at close). */
  private readonly retiring = new Map<NodeJS.Timeout, () => Promise<void>>();

  constructor(private readonly settings: NfsUserspaceSettings) {}

  async put(key: string, body: Buffer | Readable, context: DriverContext & { size?: number }): Promise<void> {
    const { folder, name } = splitKey(key);
    const dir = await this.folder(folder, true, context.signal);
    const temporary = await this.writeTemporary(dir, folder, body, context.signal);
    let retired: string | undefined;
    try {
      const session = await this.open(context.signal);
      retired = await this.retire(session, dir, name, key, context.signal);
      await session.client.rename(dir, temporary, dir, name, key, context.signal);
    } catch (error) {
      await this.discard(dir, folder, temporary);
      if (retired !== undefined) await this.discard(dir, folder, retired);
      throw this.forget(error);
    }
    if (retired !== undefined) this.discardLater(dir, folder, retired);
  }

  /**
   * NFS has no open files: once RENAME unlinks the object it replaces, readers holding its handle
   * get NFS3ERR_STALE. A second link to the old file keeps it readable for a grace period.
   */
  private async retire(
    session: Session,
    dir: Buffer,
    name: string,
    key: string,
    signal: AbortSignal,
  ): Promise<string | undefined> {
    if (this.settings.overwriteGraceMs <= 0) return undefined;
    let existing: Buffer;
    try {
      existing = (await session.client.lookup(dir, name, key, signal)).handle;
    } catch (error) {
      if (error instanceof Nfs3Error && error.status === Nfs3Status.NOENT) return undefined;
      throw error;
    }
    const retired = `${RESERVED_SEGMENT_PREFIX}-old-${randomBytes(12).toString('hex')}`;
    try {
      await session.client.link(existing, dir, retired, key, signal);
    } catch (error) {
      // Gone meanwhile, or a server without hard links: the overwrite goes on without grace.
      if (error instanceof Nfs3Error) return undefined;
      throw error;
    }
    return retired;
  }

  private discardLater(dir: Buffer, folder: string, name: string): void {
    const timer = setTimeout(() => {
      this.retiring.delete(timer);
      void this.discard(dir, folder, name);
    }, this.settings.overwriteGraceMs);
    timer.unref();
    this.retiring.set(timer, () => this.discard(dir, folder, name));
  }

  async putIfAbsent(key: string, body: Buffer, context: DriverContext): Promise<boolean> {
    const { folder, name } = splitKey(key);
    const dir = await this.folder(folder, true, context.signal);
    const session = await this.open(context.signal);
    try {
      await session.client.lookup(dir, name, key, context.signal);
      return false;
    } catch (error) {
      if (!(error instanceof Nfs3Error && error.status === Nfs3Status.NOENT)) throw this.forget(error);
    }
    const temporary = await this.writeTemporary(dir, folder, body, context.signal);
    try {
      const handle = (await session.client.lookup(dir, temporary, key, context.signal)).handle;
      await session.client.link(handle, dir, name, key, context.signal);
      return true;
    } catch (error) {
      if (error instanceof Nfs3Error && error.status === Nfs3Status.EXIST) return false;
      throw this.forget(error);
    } finally {
      await this.discard(dir, folder, temporary);
    }
  }

  async get(
    key: string,
    context: DriverContext & { range?: { start: number; end: number } },
  ): Promise<Readable> {
    const session = await this.open(context.signal);
    const { handle, attributes } = await this.resolve(key, context.signal);
    const start = context.range?.start ?? 0;
    const end = Math.min(context.range?.end ?? attributes.size, attributes.size);
    return Readable.from(this.readBlocks(session, handle, key, start, end), {
      objectMode: false,
      highWaterMark: 1,
    });
  }

  async stat(key: string, context: DriverContext): Promise<ObjectStat> {
    const { attributes } = await this.resolve(key, context.signal);
    return { key, size: attributes.size, modifiedAt: attributes.modifiedAt };
  }

  async list(prefix: string, context: DriverContext & { cursor?: string; limit: number }): Promise<ListPage> {
    // Start at the deepest folder the prefix names whole; filter the rest by key.
    const cut = prefix.lastIndexOf('/');
    const base = cut < 0 ? '' : prefix.slice(0, cut);
    let dir: Buffer;
    try {
      dir = await this.folder(base, false, context.signal);
    } catch (error) {
      if (isMissing(error)) return { objects: [] };
      throw this.forget(error);
    }
    const found: ObjectStat[] = [];
    await this.walk(dir, base, prefix, context.cursor, context.limit + 1, found, context.signal);
    if (found.length <= context.limit) return { objects: found };
    const objects = found.slice(0, context.limit);
    return { objects, cursor: objects[objects.length - 1]?.key };
  }

  async delete(key: string, context: DriverContext): Promise<void> {
    const { folder, name } = splitKey(key);
    const session = await this.open(context.signal);
    try {
      const dir = await this.folder(folder, false, context.signal);
      await session.client.remove(dir, name, key, context.signal);
    } catch (error) {
      throw this.forget(error);
    }
  }

  async copy(fromKey: string, toKey: string, context: DriverContext): Promise<void> {
    // NFSv3 has no server-side copy: the bytes pass through this process, streamed.
    const source = await this.get(fromKey, context);
    await this.put(toKey, source, context);
  }

  async rename(fromKey: string, toKey: string, context: DriverContext): Promise<void> {
    const from = splitKey(fromKey);
    const to = splitKey(toKey);
    const session = await this.open(context.signal);
    try {
      const fromDir = await this.folder(from.folder, false, context.signal);
      const toDir = await this.folder(to.folder, true, context.signal);
      await session.client.rename(fromDir, from.name, toDir, to.name, fromKey, context.signal);
    } catch (error) {
      throw this.forget(error);
    }
  }

  async capacity(context: DriverContext): Promise<RemoteCapacity> {
    const session = await this.open(context.signal);
    const stat = await session.client.fsstat(session.root, this.settings.export, context.signal);
    return {
      totalBytes: stat.totalBytes,
      freeBytes: stat.availableBytes,
      usedBytes: stat.totalBytes - stat.freeBytes,
    };
  }

  classifyError(error: unknown): ErrorClassification | undefined {
    return classifyNfsError(error);
  }

  async close(): Promise<void> {
    const retiring = [...this.retiring.entries()];
    this.retiring.clear();
    for (const [timer] of retiring) clearTimeout(timer);
    await Promise.all(retiring.map(([, discard]) => discard()));
    const session = this.session;
    this.session = null;
    this.folders.clear();
    if (session === null) return;
    try {
      const { client } = await session;
      await client.close();
      await this.mountClient?.unmount(this.settings.export);
    } catch {
      // Unmount is a courtesy to the server's mount table; a dead server needs none.
    } finally {
      await this.mountClient?.close();
      this.mountClient = null;
    }
  }

  /** Opens the session once: ports from the portmapper unless given, MNT for the root handle. */
  private open(signal: AbortSignal): Promise<Session> {
    if (this.session === null) {
      const opening = this.mount(signal);
      this.session = opening;
      opening.catch(() => {
        if (this.session === opening) this.session = null;
      });
    }
    return this.session;
  }

  private async mount(signal: AbortSignal): Promise<Session> {
    const { host, timeoutMs } = this.settings;
    const credentials: RpcCredentials = {
      uid: this.settings.uid,
      gid: this.settings.gid,
      ...(this.settings.gids ? { gids: this.settings.gids } : {}),
    };
    const portmap = { port: this.settings.portmapPort, timeoutMs, signal };
    const mountPort =
      this.settings.mountPort ?? (await lookupRpcPort(host, MOUNT_PROGRAM, MOUNT_VERSION, portmap));
    const nfsPort = this.settings.nfsPort ?? (await lookupRpcPort(host, NFS_PROGRAM, NFS_VERSION, portmap));
    const mountClient = new MountClient(host, mountPort, credentials, timeoutMs);
    let root: Buffer;
    try {
      root = await mountClient.mount(this.settings.export, signal);
    } catch (error) {
      await mountClient.close();
      throw error;
    }
    await this.mountClient?.close();
    this.mountClient = mountClient;
    const client = new Nfs3Client({
      host,
      port: nfsPort,
      credentials,
      timeoutMs,
      connectTimeoutMs: timeoutMs,
      // Several objects move at once; each keeps `concurrency` calls in flight.
      maxInFlight: Math.max(16, this.settings.concurrency * 4),
      maxRecordBytes: this.settings.ioSize + 64 * 1024,
    });
    try {
      const info = await client.fsinfo(root, this.settings.export, signal);
      const ioSize = Math.max(
        4096,
        Math.min(this.settings.ioSize, info.readMax || Infinity, info.writeMax || Infinity),
      );
      return { client, root, ioSize };
    } catch (error) {
      await client.close();
      throw error;
    }
  }

  /** Handle of a folder below the base folder ('' is the base itself), creating it on demand. */
  private folder(path: string, create: boolean, signal: AbortSignal): Promise<Buffer> {
    const cached = this.folders.get(path);
    if (cached) return cached;
    const resolving = (async (): Promise<Buffer> => {
      const session = await this.open(signal);
      const base = this.settings.path ?? '';
      if (path === '') {
        return this.descend(session, session.root, '', base.split('/').filter(Boolean), true, signal);
      }
      const cut = path.lastIndexOf('/');
      const parentPath = cut < 0 ? '' : path.slice(0, cut);
      const parent = await this.folder(parentPath, create, signal);
      return this.descend(session, parent, parentPath, [path.slice(cut + 1)], create, signal);
    })();
    this.folders.set(path, resolving);
    resolving.catch(() => {
      if (this.folders.get(path) === resolving) this.folders.delete(path);
    });
    return resolving;
  }

  private async descend(
    session: Session,
    start: Buffer,
    startPath: string,
    names: string[],
    create: boolean,
    signal: AbortSignal,
  ): Promise<Buffer> {
    let handle = start;
    let path = startPath;
    for (const name of names) {
      path = path === '' ? name : `${path}/${name}`;
      try {
        const found = await session.client.lookup(handle, name, path, signal);
        if (found.attributes && found.attributes.type !== Nfs3FileType.Directory) {
          throw new DriverError('INVALID_ARGUMENT', `"${path}" is a file where a folder is needed`);
        }
        handle = found.handle;
        continue;
      } catch (error) {
        if (!(create && error instanceof Nfs3Error && error.status === Nfs3Status.NOENT)) throw error;
      }
      try {
        const made = await session.client.mkdir(handle, name, path, 0o755, signal);
        handle = made.handle ?? (await session.client.lookup(handle, name, path, signal)).handle;
      } catch (error) {
        // Another writer created it first.
        if (!(error instanceof Nfs3Error && error.status === Nfs3Status.EXIST)) throw error;
        handle = (await session.client.lookup(handle, name, path, signal)).handle;
      }
    }
    return handle;
  }

  private async resolve(key: string, signal: AbortSignal): Promise<ResolvedObject> {
    const { folder, name } = splitKey(key);
    const session = await this.open(signal);
    try {
      const dir = await this.folder(folder, false, signal);
      const found = await session.client.lookup(dir, name, key, signal);
      const attributes = found.attributes ?? (await session.client.getattr(found.handle, key, signal));
      if (attributes.type !== Nfs3FileType.Regular) {
        throw new DriverError('NOT_FOUND', `"${key}" is a folder, not an object`);
      }
      return { handle: found.handle, attributes };
    } catch (error) {
      throw this.forget(error);
    }
  }

  /** Writes `body` to a new temporary file in `dir`, durable on return; answers its name. */
  private async writeTemporary(
    dir: Buffer,
    folder: string,
    body: Buffer | Readable,
    signal: AbortSignal,
  ): Promise<string> {
    const session = await this.open(signal);
    const name = `${RESERVED_SEGMENT_PREFIX}-${randomBytes(12).toString('hex')}`;
    const path = folder === '' ? name : `${folder}/${name}`;
    let created: { handle?: Buffer };
    try {
      created = await session.client.create(dir, name, 'guarded', path, 0o644, signal);
    } catch (error) {
      throw this.forget(error);
    }
    try {
      const handle = created.handle ?? (await session.client.lookup(dir, name, path, signal)).handle;
      await this.writeBody(session, handle, path, body, signal);
      return name;
    } catch (error) {
      await this.discard(dir, folder, name);
      throw error;
    }
  }

  private async writeBody(
    session: Session,
    handle: Buffer,
    path: string,
    body: Buffer | Readable,
    signal: AbortSignal,
  ): Promise<void> {
    const { client, ioSize } = session;
    const stable = this.settings.stable;
    const window = new Set<Promise<void>>();
    let failure: Error | undefined;
    let verifier: Buffer | undefined;
    let offset = 0;
    const send = async (at: number, block: Buffer): Promise<void> => {
      let done = 0;
      // A server may accept fewer bytes than sent: send the rest at the next offset.
      while (done < block.length) {
        const written = await client.write(handle, at + done, block.subarray(done), stable, path, signal);
        if (written.count === 0)
          throw new DriverError(
            'TRANSIENT',
            `the server accepted no bytes of "${path}" at offset ${at + done}`,
          );
        if (stable === 'unstable') {
          if (verifier === undefined) verifier = written.verifier;
          else if (!verifier.equals(written.verifier)) throw serverRestarted(path);
        }
        done += written.count;
      }
    };
    const enqueue = async (block: Buffer): Promise<void> => {
      const task = send(offset, block).catch((error: unknown) => {
        failure ??= error instanceof Error ? error : new Error(String(error));
      });
      offset += block.length;
      const tracked = task.finally(() => window.delete(tracked));
      window.add(tracked);
      while (window.size >= this.settings.concurrency) await Promise.race(window);
      if (failure !== undefined) throw failure;
    };
    for await (const block of bodyBlocks(body, ioSize)) await enqueue(block);
    await Promise.all(window);
    if (failure !== undefined) throw failure;
    if (stable === 'unstable') {
      const committed = await client.commit(handle, path, signal);
      // A different verifier means the server restarted and may have lost unstable data.
      if (verifier !== undefined && !verifier.equals(committed)) throw serverRestarted(path);
    }
  }

  private async *readBlocks(
    session: Session,
    handle: Buffer,
    key: string,
    start: number,
    end: number,
  ): AsyncGenerator<Buffer> {
    const { client, ioSize } = session;
    yield* pipelinedRead({
      key,
      start,
      end,
      pieceSize: ioSize,
      concurrency: this.settings.concurrency,
      readSome: async (offset, length) => (await client.read(handle, offset, length, key)).data,
    });
  }

  private async walk(
    dir: Buffer,
    dirPath: string,
    prefix: string,
    cursor: string | undefined,
    wanted: number,
    found: ObjectStat[],
    signal: AbortSignal,
  ): Promise<void> {
    const session = await this.open(signal);
    const entries: {
      sortKey: string;
      key: string;
      folder: boolean;
      handle?: Buffer;
      attributes?: Nfs3Attributes;
    }[] = [];
    const stale: string[] = [];
    let cookie = 0n;
    let cookieVerifier: Buffer = Buffer.alloc(8);
    for (;;) {
      const page = await session.client.readdirplus(dir, cookie, cookieVerifier, dirPath || '/', signal);
      for (const entry of page.entries) {
        cookie = entry.cookie;
        if (entry.name === '.' || entry.name === '..') continue;
        if (entry.name.startsWith(RESERVED_SEGMENT_PREFIX)) {
          if (entry.attributes && this.isStaleTemporary(entry.attributes.modifiedAt)) stale.push(entry.name);
          continue;
        }
        const key = dirPath === '' ? entry.name : `${dirPath}/${entry.name}`;
        const folder = entry.attributes?.type === Nfs3FileType.Directory;
        // A folder sorts as "name/" so that a depth-first walk yields keys in byte order.
        entries.push({
          sortKey: folder ? `${key}/` : key,
          key,
          folder,
          ...(entry.handle ? { handle: entry.handle } : {}),
          ...(entry.attributes ? { attributes: entry.attributes } : {}),
        });
      }
      cookieVerifier = page.cookieVerifier;
      if (page.eof || page.entries.length === 0) break;
    }
    // Temporaries of writers that died long ago: nobody will rename them any more.
    for (const name of stale) await this.discard(dir, dirPath, name);
    entries.sort((a, b) => compareKeys(a.sortKey, b.sortKey));
    for (const entry of entries) {
      if (found.length >= wanted) return;
      if (entry.folder) {
        const inside = entry.sortKey;
        if (!(inside.startsWith(prefix) || prefix.startsWith(inside))) continue;
        // Every key inside sorts before the cursor: skip the whole folder.
        if (cursor !== undefined && cursor >= inside && !cursor.startsWith(inside)) continue;
        const handle =
          entry.handle ??
          (
            await session.client.lookup(
              dir,
              entry.key.slice(entry.key.lastIndexOf('/') + 1),
              entry.key,
              signal,
            )
          ).handle;
        await this.walk(handle, entry.key, prefix, cursor, wanted, found, signal);
        continue;
      }
      if (!entry.key.startsWith(prefix)) continue;
      if (cursor !== undefined && compareKeys(entry.key, cursor) <= 0) continue;
      let attributes = entry.attributes;
      if (attributes === undefined) {
        if (!entry.handle) continue;
        attributes = await session.client.getattr(entry.handle, entry.key, signal);
      }
      if (attributes.type !== Nfs3FileType.Regular) continue;
      found.push({ key: entry.key, size: attributes.size, modifiedAt: attributes.modifiedAt });
    }
  }

  private isStaleTemporary(modifiedAt: Date): boolean {
    const age = this.settings.staleTemporaryMs;
    return age > 0 && Date.now() - modifiedAt.getTime() > age;
  }

  private async discard(dir: Buffer, folder: string, name: string): Promise<void> {
    try {
      const session = await this.open(new AbortController().signal);
      await session.client.remove(dir, name, folder === '' ? name : `${folder}/${name}`);
    } catch {
      // Best effort: a dead server keeps the temporary, which list() never shows.
    }
  }

  /** A stale or missing folder handle must not stay cached: the next attempt resolves again. */
  private forget(error: unknown): unknown {
    if (
      error instanceof Nfs3Error &&
      (error.status === Nfs3Status.STALE ||
        error.status === Nfs3Status.BADHANDLE ||
        error.status === Nfs3Status.NOENT)
    ) {
      this.folders.clear();
    }
    return error;
  }
}

function splitKey(key: string): { folder: string; name: string } {
  const cut = key.lastIndexOf('/');
  return cut < 0 ? { folder: '', name: key } : { folder: key.slice(0, cut), name: key.slice(cut + 1) };
}

function isMissing(error: unknown): boolean {
  return (
    error instanceof Nfs3Error && (error.status === Nfs3Status.NOENT || error.status === Nfs3Status.NOTDIR)
  );
}

function serverRestarted(path: string): DriverError {
  return new DriverError(
    'TRANSIENT',
    `the NFS server restarted while "${path}" was written (write verifier changed); unstable data may be lost, write it again`,
  );
}

/** NFS, MOUNT and RPC failures in Haven's classification. */
export function classifyNfsError(error: unknown): ErrorClassification | undefined {
  if (error instanceof Nfs3Error) {
    return { code: remoteErrorCodeForNfsStatus(error.status), reason: error.message };
  }
  if (error instanceof MountError) {
    const code =
      error.status === 1 || error.status === 13
        ? 'PERMISSION_DENIED'
        : error.status === 2
          ? 'INVALID_ARGUMENT'
          : 'TRANSIENT';
    return { code, reason: error.message };
  }
  if (error instanceof RpcError) {
    if (error.code === 'RPC_AUTH_ERROR') return { code: 'AUTH_FAILED', reason: error.message };
    if (error.code === 'RPC_ABORTED') return { code: 'ABORTED', reason: error.message };
    if (error.code === 'RPC_PROGRAM_UNAVAILABLE' || error.code === 'RPC_PROCEDURE_UNAVAILABLE') {
      return { code: 'TRANSIENT', reason: error.message };
    }
    return { code: error.transient ? 'TRANSIENT' : 'UNKNOWN', reason: error.message };
  }
  return undefined;
}
