import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, open, readdir, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { DIRECT_IO_ALIGNMENT, DriverError, isPageAligned } from '@haven/remote-sdk';
import { syncFile, syncFolder, writeAll, writeDirect } from './local.file-io';
import { makeFolderBelow } from './local.folders';

/** Staged objects a flush starts on its own (in the background) so that a long run stays bounded. */
export const STAGED_FLUSH_AT = 256;
/** Past this many staged objects, staging waits for the running flush (back-pressure). */
const STAGED_MAX = 2 * STAGED_FLUSH_AT;
/**
 * System calls of a flush run this many at once: as many as the thread pool a transfer worker
 * sizes for its data path (sizeThreadPoolForDataPath), so that concurrent folder fsyncs share the
 * journal commits they wait for (docs/benchmarks/jobs.md, "2026-12-07 (session 11)").
 */
const FLUSH_PARALLELISM = 16;
/**
 * A staged file's fdatasync starts as soon as it is written, while later objects are being
 * written, rather than all at the flush; at most half of libuv's thread pool at once (the rest wait
 * for the flush), so that syncs never hold every slot the writes need.
 */
function earlySyncsMax(env: NodeJS.ProcessEnv = process.env): number {
  const poolSize = Number(env['UV_THREADPOOL_SIZE'] ?? 4);
  return Number.isInteger(poolSize) && poolSize > 1 ? Math.floor(poolSize / 2) : 1;
}
/** Staging folders of other processes untouched this long are left-overs of a crash: removed. */
const STALE_STAGING_MS = 24 * 60 * 60 * 1000;
/** More folders than this known to exist: forget them (they are only a shortcut). */
const KNOWN_FOLDERS_MAX = 200_000;

export interface LocalStagingOptions {
  /** fdatasync staged files and fsync the folders that gained names at each flush. */
  fsync: boolean;
  /** Bodies in page-aligned memory are written around the page cache (docs/remotes.md). */
  directWrites: boolean;
  /** Opens a staged file (tests inject a file system's refusals here; default: fs.promises.open). */
  openFile?: (path: string, flags: number, mode: number) => Promise<FileHandle>;
  /** Told once when the file system refuses direct writes (default: a process warning). */
  onDirectWritesRefused?: (message: string) => void;
  /**
   * fdatasync of a staged file: through `handle`, still open from its write, when given, else by
   * name (tests observe or fail syncs here; default: syncFile). Never closes `handle`.
   */
  syncFile?: (path: string, handle?: FileHandle) => Promise<void>;
}

interface StagedObject {
  temporary: string;
  target: string;
  /** Its fdatasync, started when it was written (a few at most at once); the flush awaits it. */
  synced?: Promise<void>;
}

/**
 * Content-addressed objects written without a sync each, made durable in batches (docs/remotes.md,
 * "Staged writes"). An object is written to a file of this process's staging folder (a reserved
 * name that listings skip); a flush fdatasyncs the staged files, links each to its final name
 * (creating folders, which listings then show), removes the staged name, and fsyncs every folder
 * that gained a name. An object is therefore never visible before its content is on disk: a crash
 * or a power cut before the flush loses staged objects, never leaves a torn one.
 */
export class LocalStagingArea {
  private staged = new Map<string, StagedObject>();
  /** Folders that gained a name (a link, or a sub-folder) since their last fsync. */
  private unsyncedFolders = new Set<string>();
  private readonly knownFolders = new Set<string>();
  private folder: string | undefined;
  private flushing: Promise<void> = Promise.resolve();
  /** Objects taken by the flush in progress (they still count against STAGED_MAX). */
  private inFlush = 0;
  /** A flush started by staging has not taken its batch yet: staging starts no other. */
  private flushQueued = false;
  private readonly fsync: boolean;
  /** Bodies in page-aligned memory are written around the page cache until the file system refuses. */
  private directWrites: boolean;
  private readonly openFile: (path: string, flags: number, mode: number) => Promise<FileHandle>;
  private readonly onDirectWritesRefused: (message: string) => void;
  private readonly syncFile: (path: string, handle?: FileHandle) => Promise<void>;
  private earlySyncs = 0;
  private readonly earlySyncsMax = earlySyncsMax();

  constructor(
    private readonly root: string,
    private readonly reservedPrefix: string,
    options: LocalStagingOptions,
  ) {
    this.fsync = options.fsync;
    this.directWrites = options.directWrites;
    this.openFile = options.openFile ?? open;
    this.syncFile = options.syncFile ?? syncFile;
    this.onDirectWritesRefused =
      options.onDirectWritesRefused ?? ((message) => process.emitWarning(message, 'HavenDirectWriteWarning'));
  }

  /** False once the file system refused a direct write (then every body goes through the cache). */
  get writesDirect(): boolean {
    return this.directWrites;
  }

  /** False when `target` exists or is staged already; else stages `body` for it. */
  async stage(target: string, body: Buffer, signal: AbortSignal): Promise<boolean> {
    if (this.staged.has(target) || (await exists(target))) return false;
    signal.throwIfAborted();
    const temporary = join(await this.stagingFolder(), randomBytes(12).toString('hex'));
    // Undefined: the file system refused the direct write; this body and every later one then go
    // through the page cache (the second write is never direct: it cannot be refused so).
    const handle =
      (await this.writeStagedFile(temporary, body)) ?? (await this.writeStagedFile(temporary, body));
    if (handle === undefined) throw new Error(`staging ${temporary}: the page cache write was refused`);
    if (this.staged.has(target)) {
      // Staged by a concurrent call meanwhile: one copy is enough.
      await handle.close();
      await unlink(temporary).catch(() => undefined);
      return false;
    }
    this.staged.set(target, await this.startSync({ temporary, target }, handle));
    if (this.staged.size >= STAGED_FLUSH_AT && !this.flushQueued) {
      this.flushQueued = true;
      const flushed = this.flush();
      if (this.staged.size + this.inFlush >= STAGED_MAX) await flushed;
      // Otherwise in the background: what it fails to do is left staged for the next flush.
      else flushed.catch(() => undefined);
    }
    return true;
  }

  /** Makes everything staged when it runs durable and visible; flushes run one after another. */
  flush(): Promise<void> {
    const run = this.flushing.then(
      () => this.flushBatch(),
      () => this.flushBatch(),
    );
    this.flushing = run.catch(() => undefined);
    return run;
  }

  /**
   * Flushes what is left (a writer may still rely on it: never dropped silently), then removes
   * this process's staging folder; staging again later makes a new one.
   */
  async close(): Promise<void> {
    await this.flush();
    if (this.folder !== undefined && this.staged.size === 0) {
      await rm(this.folder, { recursive: true, force: true });
      this.folder = undefined;
    }
  }

  private async flushBatch(): Promise<void> {
    this.flushQueued = false;
    const batch = [...this.staged.values()];
    this.staged = new Map();
    this.inFlush = batch.length;
    const linked = new Set<StagedObject>();
    try {
      if (this.fsync) await forEachLimited(batch, (object) => this.synced(object));
      await forEachLimited(batch, async (object) => {
        try {
          await this.linkIntoPlace(object);
        } catch (error) {
          throw placingFailed(relative(this.root, object.target), error);
        }
        linked.add(object);
      });
      if (this.fsync) {
        // The new names, and the names of new folders in their parents: all durable before the
        // flush resolves (what refers to these objects is written after it).
        await forEachLimited([...this.unsyncedFolders], async (folder) => {
          await syncFolder(folder);
          this.unsyncedFolders.delete(folder);
        });
      }
    } catch (error) {
      // Not linked yet: staged again, for the next flush (linked ones wait on their folder's sync);
      // a copy staged again meanwhile replaces it.
      for (const object of batch) {
        if (linked.has(object)) continue;
        if (this.staged.has(object.target)) await unlink(object.temporary).catch(() => undefined);
        else this.staged.set(object.target, object);
      }
      throw error;
    } finally {
      this.inFlush = 0;
    }
  }

  /**
   * Starts the object's fdatasync now, through the handle its write left open (no open and close
   * by name: each is a thread-pool round trip that stalls the data path's main thread), unless
   * enough run already: then the handle is closed and the flush syncs the file by name.
   */
  private async startSync(object: StagedObject, handle: FileHandle): Promise<StagedObject> {
    if (!this.fsync || this.earlySyncs >= this.earlySyncsMax) {
      await handle.close();
      return object;
    }
    this.earlySyncs++;
    const synced = this.syncFile(object.temporary, handle).finally(async () => {
      this.earlySyncs--;
      await handle.close();
    });
    // Awaited (and its failure reported) by the flush that takes the object.
    synced.catch(() => undefined);
    return { ...object, synced };
  }

  /**
   * Resolves once the staged file's content is on disk: its early sync, or one now. An early sync
   * that failed fails this flush; the object stays staged and the next flush syncs it again.
   */
  private async synced(object: StagedObject): Promise<void> {
    const early = object.synced;
    object.synced = undefined;
    await (early ?? this.syncFile(object.temporary));
  }

  private async linkIntoPlace(object: StagedObject): Promise<void> {
    const folder = dirname(object.target);
    if (!this.knownFolders.has(folder)) await this.makeFolder(folder);
    try {
      await link(object.temporary, object.target);
      this.unsyncedFolders.add(folder);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        // The folder was pruned by a concurrent delete since it was known: make it again.
        this.knownFolders.delete(folder);
        await this.makeFolder(folder);
        await link(object.temporary, object.target);
        this.unsyncedFolders.add(folder);
      } else if (code !== 'EEXIST') {
        throw error;
      }
      // EEXIST: another writer stored the same content first.
    }
    await unlink(object.temporary).catch(() => undefined);
  }

  private async makeFolder(folder: string): Promise<void> {
    const first = await makeFolderBelow(this.root, folder);
    if (first !== undefined) {
      // Every folder from `first` down to `folder` is new: each parent gained a name.
      for (let current = folder; current.length >= first.length; current = dirname(current))
        this.unsyncedFolders.add(dirname(current));
    }
    if (this.knownFolders.size >= KNOWN_FOLDERS_MAX) this.knownFolders.clear();
    this.knownFolders.add(folder);
  }

  /**
   * Writes `body` to the new file `temporary`: around the page cache when its memory allows and
   * the file system accepts (docs/remotes.md, "Direct writes"), else through it. Resolves to the
   * file's handle, still open (for its sync); to undefined, with nothing left behind and direct
   * writes off, when the file system refused a direct write.
   */
  private async writeStagedFile(temporary: string, body: Buffer): Promise<FileHandle | undefined> {
    // Less than a page has no part a direct write could take.
    const direct = this.directWrites && body.length >= DIRECT_IO_ALIGNMENT && isPageAligned(body);
    let handle: FileHandle;
    try {
      handle = await this.createStagedFile(temporary, direct);
    } catch (error) {
      if (!direct || !refusedDirect(error)) throw error;
      // Linux creates the file before it checks O_DIRECT: the name is taken, and must be freed.
      await unlink(temporary).catch(() => undefined);
      this.stopDirectWrites('open');
      return undefined;
    }
    try {
      if (direct) await writeDirect(handle, body, () => this.openFile(temporary, constants.O_WRONLY, 0o644));
      else await writeAll(handle, body);
    } catch (error) {
      await handle.close().catch(() => undefined);
      await unlink(temporary).catch(() => undefined);
      if (!direct || !refusedDirect(error)) throw error;
      this.stopDirectWrites('write');
      return undefined;
    }
    return handle;
  }

  /** Direct writes off for good, said once (a process warning by default: no logger here). */
  private stopDirectWrites(refusedAt: 'open' | 'write'): void {
    this.directWrites = false;
    this.onDirectWritesRefused(
      `the file system of remote folder ${this.root} refused a direct write (O_DIRECT, EINVAL at ${refusedAt}); ` +
        'chunks are written through the page cache from now on',
    );
  }

  private async createStagedFile(file: string, direct: boolean): Promise<FileHandle> {
    const flags =
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (direct ? constants.O_DIRECT : 0);
    try {
      return await this.openFile(file, flags, 0o644);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      // The staging folder was removed (stale-folder clean-up of another process): again.
      await makeFolderBelow(this.root, dirname(file));
      return this.openFile(file, flags, 0o644);
    }
  }

  private async stagingFolder(): Promise<string> {
    if (this.folder !== undefined) return this.folder;
    const prefix = `${this.reservedPrefix}-staging-`;
    const folder = join(this.root, `${prefix}${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`);
    await makeFolderBelow(this.root, folder);
    this.folder = folder;
    await removeStaleStagingFolders(this.root, prefix, folder);
    return folder;
  }
}

async function removeStaleStagingFolders(root: string, prefix: string, own: string): Promise<void> {
  const now = Date.now();
  for (const entry of await readdir(root, { withFileTypes: true })) {
    const path = join(root, entry.name);
    if (!entry.isDirectory() || !entry.name.startsWith(prefix) || path === own) continue;
    try {
      if (now - (await stat(path)).mtimeMs > STALE_STAGING_MS)
        await rm(path, { recursive: true, force: true });
    } catch {
      // Removed by someone else meanwhile, or not ours to remove: left alone.
    }
  }
}

/** A flush failure that names the object it could not place (the errno is kept for its class). */
function placingFailed(key: string, error: unknown): Error {
  // Classified already (the remote's folder is gone): its words are the ones to show.
  if (error instanceof DriverError) return error;
  const cause = error as NodeJS.ErrnoException;
  if (typeof cause.code !== 'string') return cause instanceof Error ? cause : new Error(String(error));
  const named: NodeJS.ErrnoException = new Error(`placing staged object "${key}": ${cause.message}`, {
    cause,
  });
  named.code = cause.code;
  if (cause.syscall !== undefined) named.syscall = cause.syscall;
  return named;
}

/** EINVAL: the file system does not take O_DIRECT, or not with this alignment. */
function refusedDirect(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === 'EINVAL';
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return false;
    if (code === 'ENOTDIR')
      throw new DriverError(
        'INVALID_ARGUMENT',
        'a parent of this key is an object, and a file-system remote cannot make it a folder too',
      );
    throw error;
  }
}

async function forEachLimited<T>(items: readonly T[], action: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: Error | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < items.length) {
      const item = items[next++];
      try {
        await action(item);
      } catch (error) {
        failure ??= error instanceof Error ? error : new Error(String(error));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(FLUSH_PARALLELISM, items.length) }, worker));
  if (failure !== undefined) throw failure;
}
