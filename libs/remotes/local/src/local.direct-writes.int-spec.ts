import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, readFile, statfs, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { allocatePageAligned, RESERVED_SEGMENT_PREFIX } from '@haven/remote-sdk';
import { scratchDir } from '@haven/testing';
import { LocalStagingArea } from './local.staging';

const TMPFS_MAGIC = 0x01021994;
const PAGE = 4096;

/** Bytes of `file` in the page cache, as util-linux's fincore counts them. */
async function cachedBytes(file: string): Promise<number> {
  const { stdout } = await promisify(execFile)('fincore', [
    '--bytes',
    '--noheadings',
    '--output',
    'RES',
    file,
  ]);
  return Number(stdout.trim());
}

/** `content` in a page-aligned buffer, followed by bytes an earlier use left there. */
function alignedBody(content: Buffer): Buffer {
  const memory = allocatePageAligned(content.length + PAGE);
  memory.fill(0xee);
  content.copy(memory);
  return memory.subarray(0, content.length);
}

async function stageAndFlush(area: LocalStagingArea, target: string, body: Buffer): Promise<void> {
  expect(await area.stage(target, body, new AbortController().signal)).toBe(true);
  await area.flush();
}

describe('local remote: direct writes of staged objects', () => {
  let folder: { path: string; cleanup: () => Promise<void> };
  let root: string;

  beforeEach(async () => {
    folder = await scratchDir('haven-remote-local-direct-');
    root = join(folder.path, 'remote');
    await mkdir(root);
    // The scratch folder must be on a file system that takes O_DIRECT (ext4 here; not tmpfs).
    expect((await statfs(root)).type).not.toBe(TMPFS_MAGIC);
  });
  afterEach(async () => {
    await folder.cleanup();
  });

  it.each([1, PAGE - 1, PAGE, PAGE + 1, 2 * 1024 * 1024 + 60])(
    'writes a %d-byte object in page-aligned memory exactly, its whole pages around the page cache',
    async (length) => {
      const area = new LocalStagingArea(root, RESERVED_SEGMENT_PREFIX, { fsync: true, directWrites: true });
      const content = randomBytes(length);
      const target = join(root, 'chunks', 'aa', 'object');
      await stageAndFlush(area, target, alignedBody(content));
      expect(area.writesDirect).toBe(true);
      // At most the last page, part of which went through the cache.
      expect(await cachedBytes(target)).toBeLessThanOrEqual(PAGE);
      expect((await readFile(target)).equals(content)).toBe(true);
      await area.close();
    },
  );

  it.each([
    ['whole pages', 3 * PAGE, ['direct']],
    ['whole pages and part of one', 2 * 1024 * 1024 + 60, ['direct', 'buffered']],
    ['less than a page', PAGE - 1, ['buffered']],
  ])('never cuts a written file short: %s (%d bytes) go through handles %j', async (_, length, handles) => {
    const opened: string[] = [];
    let truncates = 0;
    const openFile = async (path: string, flags: number, mode: number): Promise<FileHandle> => {
      opened.push((flags & constants.O_DIRECT) !== 0 ? 'direct' : 'buffered');
      const handle = await open(path, flags, mode);
      return new Proxy(handle, {
        get(target, property) {
          if (property === 'truncate') truncates++;
          const value: unknown = Reflect.get(target, property, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
    };
    const area = new LocalStagingArea(root, RESERVED_SEGMENT_PREFIX, {
      fsync: true,
      directWrites: true,
      openFile,
    });
    const content = randomBytes(length);
    const target = join(root, 'object');
    await stageAndFlush(area, target, alignedBody(content));
    expect(opened).toEqual(handles);
    // A truncate inside a block costs ext4 a read of that block (docs/benchmarks/jobs.md, session 12).
    expect(truncates).toBe(0);
    expect((await readFile(target)).equals(content)).toBe(true);
    await area.close();
  });

  it('writes ordinary memory, and everything when direct writes are off, through the page cache', async () => {
    const length = 1024 * 1024 + 5;
    const direct = new LocalStagingArea(root, RESERVED_SEGMENT_PREFIX, { fsync: true, directWrites: true });
    const ordinary = join(root, 'ordinary');
    await stageAndFlush(direct, ordinary, randomBytes(length));
    // fincore sees a buffered write's pages: the check above would see them too.
    expect(await cachedBytes(ordinary)).toBe(Math.ceil(length / PAGE) * PAGE);
    await direct.close();

    const off = new LocalStagingArea(root, RESERVED_SEGMENT_PREFIX, { fsync: true, directWrites: false });
    const content = randomBytes(length);
    const target = join(root, 'off');
    await stageAndFlush(off, target, alignedBody(content));
    expect(off.writesDirect).toBe(false);
    expect(await cachedBytes(target)).toBe(Math.ceil(length / PAGE) * PAGE);
    expect((await readFile(target)).equals(content)).toBe(true);
    await off.close();
  });
});

/**
 * A file system's refusal of O_DIRECT (EINVAL), at open as Linux gives it (after creating the file)
 * or at the first write. Injected: every file system this kernel (6.6+) mounts here takes O_DIRECT.
 */
function refusingDirect(at: 'open' | 'write') {
  const refusal = (): NodeJS.ErrnoException =>
    Object.assign(new Error('EINVAL: invalid argument, open'), { code: 'EINVAL' });
  return async (path: string, flags: number, mode: number): Promise<FileHandle> => {
    if ((flags & constants.O_DIRECT) === 0) return open(path, flags, mode);
    const handle = await open(path, flags & ~constants.O_DIRECT, mode);
    if (at === 'open') {
      await handle.close();
      throw refusal();
    }
    return Object.assign(Object.create(handle) as FileHandle, {
      write: () => Promise.reject(refusal()),
      close: () => handle.close(),
    });
  };
}

describe.each(['open', 'write'] as const)(
  'local remote: a file system that refuses direct writes at %s',
  (at) => {
    let folder: { path: string; cleanup: () => Promise<void> };

    beforeEach(async () => {
      folder = await scratchDir('haven-remote-local-refused-');
    });
    afterEach(async () => {
      await folder.cleanup();
    });

    it('gets the object through the page cache instead, stops trying, and says so once', async () => {
      const told: string[] = [];
      const area = new LocalStagingArea(folder.path, RESERVED_SEGMENT_PREFIX, {
        fsync: true,
        directWrites: true,
        openFile: refusingDirect(at),
        onDirectWritesRefused: (message) => told.push(message),
      });
      const first = randomBytes(PAGE + 1);
      const second = randomBytes(3 * PAGE);
      await stageAndFlush(area, join(folder.path, 'first'), alignedBody(first));
      expect(area.writesDirect).toBe(false);
      await stageAndFlush(area, join(folder.path, 'second'), alignedBody(second));
      // Said once, naming the folder and where the file system refused.
      expect(told).toEqual([
        expect.stringContaining(
          `remote folder ${folder.path} refused a direct write (O_DIRECT, EINVAL at ${at})`,
        ),
      ]);
      expect((await readFile(join(folder.path, 'first'))).equals(first)).toBe(true);
      expect((await readFile(join(folder.path, 'second'))).equals(second)).toBe(true);
      await area.close();
      // Nothing left of the refused attempt: no staged file, no staging folder.
      expect((await readdir(folder.path)).sort()).toEqual(['first', 'second']);
    });
  },
);
