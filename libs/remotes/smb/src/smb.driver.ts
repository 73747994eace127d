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

import { NtlmProtocolError } from './ntlm.auth';
import { Access, Disposition, Smb2Client, type Smb2ClientOptions, type Smb2OpenFile } from './smb2.client';
import { NtStatus, Smb2ConnectionError, Smb2Error, remoteErrorCodeForNtStatus } from './smb2.status';

export interface SmbDriverSettings extends Smb2ClientOptions {
  /** Folder inside the share holding this remote's objects (created when missing). */
  prefix?: string;
  /** Bytes per READ / WRITE request (capped by the server's maxima). */
  ioSize: number;
  /** READ / WRITE requests in flight per object. */
  concurrency: number;
  /** list() removes `.haven-tmp-*` files older than this (left by writers that died); 0: never. */
  staleTemporaryMs: number;
}

/**
 * RemoteDriver over the built-in SMB2 client. Objects are files under `prefix` in the share.
 * put writes `.haven-tmp-*` beside the target at explicit offsets, flushes it and renames it over
 * the key; putIfAbsent hard-links the flushed temporary to the key (the server refuses when the
 * key exists). A lost connection fails the operation as TRANSIENT; the next one reconnects.
 */
export class SmbDriver implements RemoteDriver {
  readonly type = 'smb';
  readonly features: RemoteFeatures = { atomicPutIfAbsent: true, atomicRename: true, capacity: true };
  private client: Promise<Smb2Client> | null = null;
  private readonly knownFolders = new Set<string>();

  constructor(private readonly settings: SmbDriverSettings) {}

  async put(key: string, body: Buffer | Readable, context: DriverContext & { size?: number }): Promise<void> {
    const client = await this.connect(context.signal);
    const temporary = await this.writeTemporary(client, key, body, context.signal);
    try {
      await this.withOpen(
        client,
        temporary,
        { access: Access.DELETE, disposition: Disposition.OPEN },
        context.signal,
        (file) => this.replace(client, file, key, context.signal),
      );
    } catch (error) {
      await this.discard(client, temporary);
      throw this.forget(error);
    }
  }

  /**
   * Renames `file` over `key`. SMB refuses to replace a file that someone has open (a reader),
   * but lets an open file be renamed: then the old version moves aside and the new one takes its
   * name, both requests sent back to back; the old one is deleted when its last reader closes.
   */
  private async replace(
    client: Smb2Client,
    file: Smb2OpenFile,
    key: string,
    signal: AbortSignal,
  ): Promise<void> {
    try {
      await client.rename(file, this.path(key), true, signal);
      return;
    } catch (error) {
      if (!(error instanceof Smb2Error && error.status === NtStatus.ACCESS_DENIED)) throw error;
    }
    const folder = folderOf(key);
    const retired = this.path(
      `${folder === '' ? '' : `${folder}/`}${RESERVED_SEGMENT_PREFIX}-old-${randomBytes(12).toString('hex')}`,
    );
    const old = await client.open(
      this.path(key),
      { access: Access.DELETE, disposition: Disposition.OPEN, directory: false },
      signal,
    );
    try {
      const [aside, into] = await Promise.allSettled([
        client.rename(old, retired, false, signal),
        client.rename(file, this.path(key), false, signal),
      ]);
      if (aside.status === 'rejected') throw aside.reason;
      if (into.status === 'rejected') throw into.reason;
      await client.deleteOnClose(old, signal);
    } finally {
      await client.close(old).catch(() => undefined);
    }
  }

  async putIfAbsent(key: string, body: Buffer, context: DriverContext): Promise<boolean> {
    const client = await this.connect(context.signal);
    if (await this.exists(client, key, context.signal)) return false;
    const temporary = await this.writeTemporary(client, key, body, context.signal);
    try {
      await this.withOpen(
        client,
        temporary,
        { access: Access.DELETE, disposition: Disposition.OPEN },
        context.signal,
        (file) => client.link(file, this.path(key), false, context.signal),
      );
      return true;
    } catch (error) {
      if (error instanceof Smb2Error && error.status === NtStatus.OBJECT_NAME_COLLISION) return false;
      throw this.forget(error);
    } finally {
      await this.discard(client, temporary);
    }
  }

  async get(
    key: string,
    context: DriverContext & { range?: { start: number; end: number } },
  ): Promise<Readable> {
    const client = await this.connect(context.signal);
    const file = await this.openObject(client, key, Access.READ_DATA, context.signal);
    const start = context.range?.start ?? 0;
    const end = Math.min(context.range?.end ?? file.size, file.size);
    let started = false;
    const blocks = this.readBlocks(client, file, key, start, end, () => (started = true));
    const stream = Readable.from(blocks, { objectMode: false, highWaterMark: 1 });
    // A stream destroyed before its first read never runs the generator's cleanup: close here.
    stream.once('close', () => {
      if (!started) client.close(file).catch(() => undefined);
    });
    return stream;
  }

  async stat(key: string, context: DriverContext): Promise<ObjectStat> {
    const client = await this.connect(context.signal);
    const file = await this.openObject(client, key, 0, context.signal);
    await client.close(file);
    return { key, size: file.size, modifiedAt: file.modifiedAt };
  }

  async list(prefix: string, context: DriverContext & { cursor?: string; limit: number }): Promise<ListPage> {
    const client = await this.connect(context.signal);
    const cut = prefix.lastIndexOf('/');
    const base = cut < 0 ? '' : prefix.slice(0, cut);
    const found: ObjectStat[] = [];
    try {
      await this.walk(client, base, prefix, context.cursor, context.limit + 1, found, context.signal);
    } catch (error) {
      if (isMissing(error)) return { objects: [] };
      throw this.forget(error);
    }
    if (found.length <= context.limit) return { objects: found };
    const objects = found.slice(0, context.limit);
    return { objects, cursor: objects[objects.length - 1]?.key };
  }

  async delete(key: string, context: DriverContext): Promise<void> {
    const client = await this.connect(context.signal);
    try {
      const file = await client.open(
        this.path(key),
        { access: Access.DELETE, disposition: Disposition.OPEN, directory: false, deleteOnClose: true },
        context.signal,
      );
      await client.close(file);
    } catch (error) {
      throw this.forget(error);
    }
  }

  async copy(fromKey: string, toKey: string, context: DriverContext): Promise<void> {
    // Through this process, streamed: server-side copy (FSCTL_SRV_COPYCHUNK) is not implemented.
    const source = await this.get(fromKey, context);
    await this.put(toKey, source, context);
  }

  async rename(fromKey: string, toKey: string, context: DriverContext): Promise<void> {
    const client = await this.connect(context.signal);
    await this.ensureFolder(client, folderOf(toKey), context.signal);
    try {
      await this.withOpen(
        client,
        this.path(fromKey),
        { access: Access.DELETE, disposition: Disposition.OPEN, directory: false },
        context.signal,
        (file) => client.rename(file, this.path(toKey), true, context.signal),
      );
    } catch (error) {
      throw this.forget(error);
    }
  }

  async capacity(context: DriverContext): Promise<RemoteCapacity> {
    const client = await this.connect(context.signal);
    const size = await this.withOpen(
      client,
      '',
      { access: Access.READ_DATA, disposition: Disposition.OPEN, directory: true },
      context.signal,
      (dir) => client.fsSize(dir, context.signal),
    );
    return {
      totalBytes: size.totalBytes,
      freeBytes: size.freeBytes,
      usedBytes: size.totalBytes - size.freeBytes,
    };
  }

  classifyError(error: unknown): ErrorClassification | undefined {
    return classifySmbError(error);
  }

  async close(): Promise<void> {
    const pending = this.client;
    this.client = null;
    this.knownFolders.clear();
    if (pending === null) return;
    try {
      const client = await pending;
      await client.disconnect();
    } catch {
      // Nothing to release on a connection that never opened or already died.
    }
  }

  private connect(signal: AbortSignal): Promise<Smb2Client> {
    const current = this.client;
    if (current !== null) {
      // A lost connection is replaced on the next operation.
      return current.then((client) => (client.alive ? client : this.reconnect(current, signal)));
    }
    return this.reconnect(null, signal);
  }

  private reconnect(previous: Promise<Smb2Client> | null, signal: AbortSignal): Promise<Smb2Client> {
    if (this.client !== previous && this.client !== null) return this.client;
    this.knownFolders.clear();
    const opening = Smb2Client.connect(this.settings, signal);
    this.client = opening;
    opening.catch(() => {
      if (this.client === opening) this.client = null;
    });
    return opening;
  }

  /** Path inside the share of a key (or of a folder of keys). */
  private path(key: string): string {
    const prefix = this.settings.prefix?.replace(/^\/+|\/+$/g, '') ?? '';
    if (key === '') return prefix;
    return prefix === '' ? key : `${prefix}/${key}`;
  }

  private async ensureFolder(client: Smb2Client, folder: string, signal: AbortSignal): Promise<void> {
    const full = this.path(folder);
    if (full === '' || this.knownFolders.has(full)) return;
    const segments = full.split('/');
    let path = '';
    for (const segment of segments) {
      path = path === '' ? segment : `${path}/${segment}`;
      if (this.knownFolders.has(path)) continue;
      const dir = await client.open(
        path,
        { access: Access.READ_DATA, disposition: Disposition.OPEN_IF, directory: true },
        signal,
      );
      await client.close(dir);
      this.knownFolders.add(path);
    }
  }

  private async openObject(
    client: Smb2Client,
    key: string,
    access: number,
    signal: AbortSignal,
  ): Promise<Smb2OpenFile> {
    try {
      const file = await client.open(this.path(key), { access, disposition: Disposition.OPEN }, signal);
      if (file.directory) {
        await client.close(file);
        throw new DriverError('NOT_FOUND', `"${key}" is a folder, not an object`);
      }
      return file;
    } catch (error) {
      throw this.forget(error);
    }
  }

  private async exists(client: Smb2Client, key: string, signal: AbortSignal): Promise<boolean> {
    try {
      await client.close(await this.openObject(client, key, 0, signal));
      return true;
    } catch (error) {
      if (error instanceof DriverError && error.code === 'NOT_FOUND') return true; // a folder holds the name
      if (isMissing(error)) return false;
      throw error;
    }
  }

  private async withOpen<T>(
    client: Smb2Client,
    path: string,
    options: { access: number; disposition: number; directory?: boolean },
    signal: AbortSignal,
    use: (file: Smb2OpenFile) => Promise<T>,
  ): Promise<T> {
    const file = await client.open(path, options, signal);
    try {
      return await use(file);
    } finally {
      await client.close(file).catch(() => undefined);
    }
  }

  /** Writes `body` to a new temporary beside `key`, flushed on return; answers its share path. */
  private async writeTemporary(
    client: Smb2Client,
    key: string,
    body: Buffer | Readable,
    signal: AbortSignal,
  ): Promise<string> {
    const folder = folderOf(key);
    await this.ensureFolder(client, folder, signal);
    const name = `${RESERVED_SEGMENT_PREFIX}-${randomBytes(12).toString('hex')}`;
    const temporary = this.path(folder === '' ? name : `${folder}/${name}`);
    const create = (): Promise<Smb2OpenFile> =>
      client.open(
        temporary,
        { access: Access.WRITE_DATA | Access.DELETE, disposition: Disposition.CREATE, directory: false },
        signal,
      );
    let file: Smb2OpenFile;
    try {
      file = await create();
    } catch (error) {
      if (!isMissing(error)) throw error;
      // The folder was known but another writer removed it meanwhile: create it again, once.
      this.forget(error);
      await this.ensureFolder(client, folder, signal);
      file = await create();
    }
    try {
      await this.writeBody(client, file, body, signal);
      await client.flush(file, signal);
      await client.close(file);
      return temporary;
    } catch (error) {
      await client.close(file).catch(() => undefined);
      await this.discard(client, temporary);
      throw error;
    }
  }

  private async writeBody(
    client: Smb2Client,
    file: Smb2OpenFile,
    body: Buffer | Readable,
    signal: AbortSignal,
  ): Promise<void> {
    const ioSize = Math.min(this.settings.ioSize, client.maxWriteSize);
    const window = new Set<Promise<void>>();
    let failure: Error | undefined;
    let offset = 0;
    const send = async (at: number, block: Buffer): Promise<void> => {
      let done = 0;
      while (done < block.length) {
        const count = await client.write(file, at + done, block.subarray(done), signal);
        if (count === 0)
          throw new DriverError(
            'TRANSIENT',
            `the server accepted no bytes of "${file.path}" at offset ${at + done}`,
          );
        done += count;
      }
    };
    for await (const block of bodyBlocks(body, ioSize)) {
      const task = send(offset, block).catch((error: unknown) => {
        failure ??= error instanceof Error ? error : new Error(String(error));
      });
      offset += block.length;
      const tracked = task.finally(() => window.delete(tracked));
      window.add(tracked);
      while (window.size >= this.settings.concurrency) await Promise.race(window);
      if (failure !== undefined) break;
    }
    await Promise.all(window);
    if (failure !== undefined) throw failure;
  }

  private async *readBlocks(
    client: Smb2Client,
    file: Smb2OpenFile,
    key: string,
    start: number,
    end: number,
    onStart: () => void,
  ): AsyncGenerator<Buffer> {
    onStart();
    const ioSize = Math.min(this.settings.ioSize, client.maxReadSize);
    try {
      yield* pipelinedRead({
        key,
        start,
        end,
        pieceSize: ioSize,
        concurrency: this.settings.concurrency,
        readSome: (offset, length) => client.read(file, offset, length),
      });
    } finally {
      await client.close(file).catch(() => undefined);
    }
  }

  private async walk(
    client: Smb2Client,
    folder: string,
    prefix: string,
    cursor: string | undefined,
    wanted: number,
    found: ObjectStat[],
    signal: AbortSignal,
  ): Promise<void> {
    const entries: { sortKey: string; key: string; folder: boolean; size: number; modifiedAt: Date }[] = [];
    const stale: string[] = [];
    await this.withOpen(
      client,
      this.path(folder),
      { access: Access.READ_DATA, disposition: Disposition.OPEN, directory: true },
      signal,
      async (dir) => {
        let restart = true;
        for (;;) {
          const batch = await client.queryDirectory(dir, restart, signal);
          restart = false;
          if (batch === null) break;
          for (const entry of batch) {
            if (entry.name === '.' || entry.name === '..') continue;
            if (entry.name.startsWith(RESERVED_SEGMENT_PREFIX)) {
              const age = this.settings.staleTemporaryMs;
              if (!entry.directory && age > 0 && Date.now() - entry.modifiedAt.getTime() > age)
                stale.push(entry.name);
              continue;
            }
            const key = folder === '' ? entry.name : `${folder}/${entry.name}`;
            // A folder sorts as "name/" so that a depth-first walk yields keys in byte order.
            entries.push({
              sortKey: entry.directory ? `${key}/` : key,
              key,
              folder: entry.directory,
              size: entry.size,
              modifiedAt: entry.modifiedAt,
            });
          }
        }
      },
    );
    // Temporaries of writers that died long ago: nobody will rename them any more.
    for (const name of stale)
      await this.discard(client, this.path(folder === '' ? name : `${folder}/${name}`));
    entries.sort((a, b) => compareKeys(a.sortKey, b.sortKey));
    for (const entry of entries) {
      if (found.length >= wanted) return;
      if (entry.folder) {
        const inside = entry.sortKey;
        if (!(inside.startsWith(prefix) || prefix.startsWith(inside))) continue;
        if (cursor !== undefined && cursor >= inside && !cursor.startsWith(inside)) continue;
        try {
          await this.walk(client, entry.key, prefix, cursor, wanted, found, signal);
        } catch (error) {
          // Removed since its parent was read (another writer emptied it): nothing to list there.
          if (!isMissing(error)) throw error;
        }
        continue;
      }
      if (!entry.key.startsWith(prefix)) continue;
      if (cursor !== undefined && compareKeys(entry.key, cursor) <= 0) continue;
      found.push({ key: entry.key, size: entry.size, modifiedAt: entry.modifiedAt });
    }
  }

  private async discard(client: Smb2Client, path: string): Promise<void> {
    try {
      const file = await client.open(path, {
        access: Access.DELETE,
        disposition: Disposition.OPEN,
        directory: false,
        deleteOnClose: true,
      });
      await client.close(file);
    } catch {
      // Best effort: a dead server keeps the temporary, which list() never shows.
    }
  }

  /** A folder removed behind our back must be created again by the next put. */
  private forget(error: unknown): unknown {
    if (isMissing(error)) this.knownFolders.clear();
    return error;
  }
}

function folderOf(key: string): string {
  const cut = key.lastIndexOf('/');
  return cut < 0 ? '' : key.slice(0, cut);
}

function isMissing(error: unknown): boolean {
  return (
    error instanceof Smb2Error &&
    (error.status === NtStatus.OBJECT_NAME_NOT_FOUND ||
      error.status === NtStatus.OBJECT_PATH_NOT_FOUND ||
      error.status === NtStatus.NO_SUCH_FILE ||
      error.status === NtStatus.NOT_A_DIRECTORY)
  );
}

/** SMB statuses and connection failures in Haven's classification. */
export function classifySmbError(error: unknown): ErrorClassification | undefined {
  if (error instanceof Smb2Error) {
    let reason = error.message;
    if (error.status === NtStatus.BAD_NETWORK_NAME) reason += ' (no such share: check the share name)';
    if (remoteErrorCodeForNtStatus(error.status) === 'AUTH_FAILED')
      reason += ' (user name, password or domain rejected)';
    return { code: remoteErrorCodeForNtStatus(error.status), reason };
  }
  if (error instanceof Smb2ConnectionError) {
    if (error.code === 'SMB_ABORTED') return { code: 'ABORTED', reason: error.message };
    return { code: 'TRANSIENT', reason: error.message };
  }
  if (error instanceof NtlmProtocolError) return { code: 'AUTH_FAILED', reason: error.message };
  return undefined;
}
