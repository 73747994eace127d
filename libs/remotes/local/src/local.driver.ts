import { randomBytes } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import {
  copyFile,
  link,
  open,
  readdir,
  rename,
  rmdir,
  stat,
  statfs,
  unlink,
  type FileHandle,
} from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { addAbortSignal, type Readable } from 'node:stream';
import {
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
import { syncFolder, writeAll } from './local.file-io';
import { makeFolderBelow } from './local.folders';
import { LocalStagingArea } from './local.staging';

export interface LocalDriverOptions {
  /** Absolute folder that holds the objects. */
  path: string;
  /** fsync files and folders before a put returns (default true; off only for throw-away data). */
  fsync?: boolean;
  /**
   * Content-addressed objects in page-aligned memory are written around the page cache (O_DIRECT)
   * when the file system takes it (default true; docs/remotes.md, "Direct writes").
   */
  directWrites?: boolean;
}

/** How often a put re-creates its folder when a concurrent delete removed it meanwhile. */
const FOLDER_RACE_RETRIES = 5;

/**
 * Objects as files under a folder. Atomic put: write a temporary file in the target's folder
 * through one file handle (create, write, fdatasync, close), rename it over the target, fsync the
 * folder; a put resolves once both the content and the name are durable. Concurrent puts into one
 * folder share a folder fsync when one started after their rename is still to come (group commit). putIfAbsent links the finished temporary
 * file to the target name: link() fails with EEXIST when it exists, atomically, and the object is
 * never visible half-written. Empty folders left by deletes are removed.
 */
export class LocalDriver implements RemoteDriver {
  readonly type = 'local';
  readonly features: RemoteFeatures = {
    atomicPutIfAbsent: true,
    atomicRename: true,
    capacity: true,
    // list() reads each folder then stats each file in it (walk below).
    listingStatsEachObject: true,
  };
  private readonly root: string;
  private readonly fsync: boolean;
  /** Content-addressed objects written now, made durable and visible in batches (flush). */
  private readonly staging: LocalStagingArea;
  /** Folder fsyncs in progress, and the one queued to start after each (shared by its callers). */
  private readonly folderSyncs = new Map<string, { running: Promise<void>; next?: Promise<void> }>();

  constructor(options: LocalDriverOptions) {
    this.root =
      options.path.endsWith(sep) && options.path.length > 1 ? options.path.slice(0, -1) : options.path;
    this.fsync = options.fsync ?? true;
    this.staging = new LocalStagingArea(this.root, RESERVED_SEGMENT_PREFIX, {
      fsync: this.fsync,
      directWrites: options.directWrites ?? true,
    });
  }

  async put(key: string, body: Buffer | Readable, context: DriverContext): Promise<void> {
    const target = this.file(key);
    const temporary = await this.writeTemporary(target, body, context.signal);
    try {
      await rename(temporary, target);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
    await this.syncFolder(dirname(target));
  }

  async putIfAbsent(key: string, body: Buffer, context: DriverContext): Promise<boolean> {
    const target = this.file(key);
    const temporary = await this.writeTemporary(target, body, context.signal);
    try {
      await link(temporary, target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    } finally {
      await unlink(temporary).catch(() => undefined);
    }
    await this.syncFolder(dirname(target));
    return true;
  }

  /** Written to this process's staging folder now; durable and visible at the next flush. */
  async stageIfAbsent(key: string, body: Buffer, context: DriverContext): Promise<boolean> {
    return this.staging.stage(this.file(key), body, context.signal);
  }

  async flush(): Promise<void> {
    await this.staging.flush();
  }

  async get(
    key: string,
    context: DriverContext & { range?: { start: number; end: number } },
  ): Promise<Readable> {
    const path = this.file(key);
    // Open first, so a missing object fails get() itself rather than the stream later.
    const handle = await open(path, constants.O_RDONLY);
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw new DriverError('NOT_FOUND', 'no such object (it is a folder)');
    } catch (error) {
      await handle.close();
      throw error;
    }
    const range = context.range;
    return createReadStream('', {
      fd: handle,
      start: range?.start,
      end: range === undefined ? undefined : range.end - 1,
      highWaterMark: 1024 * 1024,
    });
  }

  /** One read into one buffer of the object's size (a chunk is one allocation, not a stream's four). */
  async getBuffer(
    key: string,
    context: DriverContext & { range?: { start: number; end: number }; maxBytes: number },
  ): Promise<Buffer> {
    const handle = await open(this.file(key), constants.O_RDONLY);
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw new DriverError('NOT_FOUND', 'no such object (it is a folder)');
      const start = Math.min(context.range?.start ?? 0, info.size);
      const end = Math.min(context.range?.end ?? info.size, info.size);
      const length = end - start;
      if (length > context.maxBytes)
        throw new DriverError(
          'INVALID_ARGUMENT',
          `the object is larger than ${context.maxBytes} bytes; read it as a stream with get()`,
        );
      const buffer = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        context.signal.throwIfAborted();
        const { bytesRead } = await handle.read(buffer, done, length - done, start + done);
        // The file was cut short meanwhile: what it holds now.
        if (bytesRead === 0) return buffer.subarray(0, done);
        done += bytesRead;
      }
      return buffer;
    } finally {
      await handle.close();
    }
  }

  async stat(key: string): Promise<ObjectStat> {
    const info = await stat(this.file(key));
    if (!info.isFile()) throw new DriverError('NOT_FOUND', 'no such object (it is a folder)');
    return { key, size: info.size, modifiedAt: info.mtime };
  }

  async list(prefix: string, context: DriverContext & { cursor?: string; limit: number }): Promise<ListPage> {
    const slash = prefix.lastIndexOf('/');
    const folderKey = slash < 0 ? '' : prefix.slice(0, slash + 1);
    const objects: ObjectStat[] = [];
    const after = context.cursor;
    // One more than asked tells whether another page exists.
    const wanted = context.limit + 1;
    await this.walk(folderKey, prefix, after, objects, wanted, context.signal);
    if (objects.length < wanted) return { objects };
    objects.length = context.limit;
    return { objects, cursor: objects[objects.length - 1]?.key };
  }

  async delete(key: string): Promise<void> {
    const target = this.file(key);
    const info = await stat(target);
    if (!info.isFile()) throw new DriverError('NOT_FOUND', 'no such object (it is a folder)');
    await unlink(target);
    await this.pruneFolders(dirname(target));
  }

  async copy(fromKey: string, toKey: string, context: DriverContext): Promise<void> {
    const source = this.file(fromKey);
    const target = this.file(toKey);
    await this.stat(fromKey);
    const temporary = await this.createTemporary(target);
    try {
      await copyFile(source, temporary);
      if (context.signal.aborted) throw context.signal.reason;
      if (this.fsync) {
        const handle = await open(temporary, constants.O_RDONLY);
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
      }
      await rename(temporary, target);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
    await this.syncFolder(dirname(target));
  }

  async rename(fromKey: string, toKey: string): Promise<void> {
    const source = this.file(fromKey);
    const target = this.file(toKey);
    await this.stat(fromKey);
    await this.withFolder(target, () => rename(source, target));
    await this.syncFolder(dirname(target));
    await this.pruneFolders(dirname(source));
  }

  async capacity(): Promise<RemoteCapacity> {
    const info = await statfs(this.root);
    const totalBytes = info.blocks * info.bsize;
    const freeBytes = info.bavail * info.bsize;
    return { totalBytes, freeBytes, usedBytes: totalBytes - info.bfree * info.bsize };
  }

  classifyError(error: unknown): ErrorClassification | undefined {
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    if ((code === 'EEXIST' || code === 'ENOTDIR') && (error as NodeJS.ErrnoException).syscall === 'mkdir')
      return {
        code: 'INVALID_ARGUMENT',
        reason: 'a parent of this key is an object, and a file-system remote cannot make it a folder too',
      };
    if (code === 'ENOENT' || code === 'ENOTDIR') return { code: 'NOT_FOUND', reason: 'no such object' };
    if (code === 'EISDIR') return { code: 'NOT_FOUND', reason: 'no such object (it is a folder)' };

    if (code === 'ENOSPC' || code === 'EDQUOT')
      return { code: 'NO_SPACE', reason: `the file system of ${this.root} is full (${code})` };
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS')
      return { code: 'PERMISSION_DENIED', reason: `access to ${this.root} was refused (${code})` };
    return undefined;
  }

  async close(): Promise<void> {
    // Nothing else held open between operations.
    await this.staging.close();
  }

  private file(key: string): string {
    return join(this.root, ...key.split('/'));
  }

  private temporaryName(target: string): string {
    return join(dirname(target), `${RESERVED_SEGMENT_PREFIX}-${randomBytes(8).toString('hex')}`);
  }

  /** An empty, new temporary file in `target`'s folder (created, so a concurrent prune cannot remove the folder). */
  private async createTemporary(target: string): Promise<string> {
    const temporary = this.temporaryName(target);
    const handle = await this.createFile(temporary);
    await handle.close();
    return temporary;
  }

  /** Creates `file` (exclusive, write-only), making its folder first only when it is missing. */
  private async createFile(file: string): Promise<FileHandle> {
    let handle: FileHandle | undefined;
    await this.withFolder(file, async () => {
      handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
    });
    if (handle === undefined) throw new Error(`creating ${file} returned no file handle`);
    return handle;
  }

  /**
   * Writes `body` to a fresh temporary file next to `target` through one handle, flushed to disk
   * (fdatasync: the data and the size, what reading it back needs); removes it on any failure.
   */
  private async writeTemporary(
    target: string,
    body: Buffer | Readable,
    signal: AbortSignal,
  ): Promise<string> {
    signal.throwIfAborted();
    const temporary = this.temporaryName(target);
    const handle = await this.createFile(temporary);
    try {
      try {
        if (Buffer.isBuffer(body)) {
          await writeAll(handle, body);
        } else {
          for await (const chunk of addAbortSignal(signal, body) as AsyncIterable<Buffer | string>) {
            await writeAll(handle, typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
          }
        }
        signal.throwIfAborted();
        if (this.fsync) await handle.datasync();
      } finally {
        await handle.close();
      }
      return temporary;
    } catch (error) {
      if (!Buffer.isBuffer(body) && !body.destroyed) body.destroy();
      await unlink(temporary).catch(() => undefined);
      await this.pruneFolders(dirname(temporary));
      throw error;
    }
  }

  /**
   * Runs `action`; when `target`'s folder is missing (first object in it, or a concurrent delete
   * pruned it), creates it and runs it again: no mkdir call for folders that exist. The remote's
   * own folder is never created (makeFolderBelow): gone, it fails the write naming it.
   */
  private async withFolder(target: string, action: () => Promise<void>): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await action();
        return;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        // ENOTDIR: a parent is a file; mkdir then fails naming that (INVALID_ARGUMENT).
        if ((code !== 'ENOENT' && code !== 'ENOTDIR') || attempt > FOLDER_RACE_RETRIES) throw error;
      }
      await makeFolderBelow(this.root, dirname(target));
    }
  }

  /**
   * Makes the entries of `folder` durable: resolves after an fsync of it that started after this
   * call. While one runs, later callers share the next one (one fsync for many renames).
   */
  private async syncFolder(folder: string): Promise<void> {
    if (!this.fsync) return;
    const state = this.folderSyncs.get(folder);
    if (state === undefined) {
      const running = syncFolder(folder).finally(() => this.folderSyncDone(folder));
      this.folderSyncs.set(folder, { running });
      return running;
    }
    state.next ??= state.running.then(
      () => syncFolder(folder),
      () => syncFolder(folder),
    );
    return state.next;
  }

  /** The running fsync of a folder ended: the one queued behind it (if any) becomes the running one. */
  private folderSyncDone(folder: string): void {
    const state = this.folderSyncs.get(folder);
    if (state === undefined) return;
    const next = state.next;
    if (next === undefined) {
      this.folderSyncs.delete(folder);
      return;
    }
    const running = next.finally(() => this.folderSyncDone(folder));
    running.catch(() => undefined);
    this.folderSyncs.set(folder, { running });
  }

  /** Removes now-empty folders from `folder` up to (not including) the root. */
  private async pruneFolders(folder: string): Promise<void> {
    let current = folder;
    while (current.length > this.root.length && current.startsWith(this.root + sep)) {
      try {
        await rmdir(current);
      } catch {
        return; // not empty (or already gone): stop
      }
      current = dirname(current);
    }
  }

  /**
   * Depth-first walk in key order. Sorting a folder's entries by name + '/' for sub-folders gives
   * the same order as sorting the full keys (so "a-b" comes before "a/x", as in S3 listings).
   */
  private async walk(
    folderKey: string,
    prefix: string,
    after: string | undefined,
    out: ObjectStat[],
    wanted: number,
    signal: AbortSignal,
  ): Promise<void> {
    if (signal.aborted) throw signal.reason;
    let entries;
    try {
      entries = await readdir(join(this.root, ...folderKey.split('/').filter(Boolean)), {
        withFileTypes: true,
      });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw error;
    }
    const named = entries
      .filter(
        (entry) => !entry.name.startsWith(RESERVED_SEGMENT_PREFIX) && (entry.isFile() || entry.isDirectory()),
      )
      .map((entry) => ({ entry, sortKey: folderKey + entry.name + (entry.isDirectory() ? '/' : '') }))
      .sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
    for (const { entry, sortKey } of named) {
      if (out.length >= wanted) return;
      // Only entries that can hold keys starting with the prefix.
      if (!(sortKey.startsWith(prefix) || (entry.isDirectory() && prefix.startsWith(sortKey)))) continue;
      if (entry.isDirectory()) {
        // Skip folders wholly before the cursor.
        if (after !== undefined && sortKey < after && !after.startsWith(sortKey)) continue;
        await this.walk(sortKey, prefix, after, out, wanted, signal);
        continue;
      }
      if (after !== undefined && sortKey <= after) continue;
      try {
        const info = await stat(join(this.root, ...sortKey.split('/')));
        out.push({ key: sortKey, size: info.size, modifiedAt: info.mtime });
      } catch (error) {
        // Deleted while listing: not part of the answer.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
  }
}
