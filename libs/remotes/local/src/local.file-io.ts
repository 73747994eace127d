import { constants } from 'node:fs';
import { open as openFile, type FileHandle } from 'node:fs/promises';
import { DIRECT_IO_ALIGNMENT } from '@haven/remote-sdk';

/**
 * The most one write() call is given. Measured on ext4 (docs/benchmarks/jobs.md, "data path"): a
 * 2 MiB chunk written in one call costs the kernel 3-4 times the CPU of the same bytes written
 * 512 KiB at a time (its page-cache copy); smaller pieces cost more system calls.
 */
const WRITE_PIECE = 512 * 1024;

export async function writeAll(handle: FileHandle, data: Buffer): Promise<void> {
  let written = 0;
  while (written < data.length) {
    const { bytesWritten } = await handle.write(data, written, Math.min(WRITE_PIECE, data.length - written));
    written += bytesWritten;
  }
}

/**
 * Writes `body` (page-aligned memory: isPageAligned) to a new file opened with O_DIRECT: its whole
 * pages directly, and the rest of a last page, which a direct write cannot take, through
 * `openBuffered` (the same file without O_DIRECT). A direct write of the padded length followed by
 * a truncate to `body.length` stores the same bytes but costs more: a truncate inside a block makes
 * ext4 read that block back to zero its end, and update its orphan list (docs/benchmarks/jobs.md,
 * "session 12"). A write the file system refuses throws EINVAL.
 */
export async function writeDirect(
  handle: FileHandle,
  body: Buffer,
  openBuffered: () => Promise<FileHandle>,
): Promise<void> {
  const wholePages = body.length - (body.length % DIRECT_IO_ALIGNMENT);
  let written = 0;
  while (written < wholePages) {
    const { bytesWritten } = await handle.write(body, written, wholePages - written, written);
    // A short write leaves an unaligned offset, which the next write refuses (EINVAL).
    if (bytesWritten === 0) throw new Error(`direct write stopped at byte ${written} of ${wholePages}`);
    written += bytesWritten;
  }
  if (written === body.length) return;
  const buffered = await openBuffered();
  try {
    while (written < body.length) {
      const { bytesWritten } = await buffered.write(body, written, body.length - written, written);
      written += bytesWritten;
    }
  } finally {
    await buffered.close();
  }
}

/**
 * fdatasync of a file: its content and size, what reading it back needs. Through `open` when given
 * (any handle of the file: the sync is the file's, whichever descriptor wrote), else by name.
 */
export async function syncFile(path: string, open?: FileHandle): Promise<void> {
  if (open !== undefined) return open.datasync();
  const handle = await openFile(path, constants.O_RDONLY);
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** fsync of a folder: the names created or removed in it. */
export async function syncFolder(folder: string): Promise<void> {
  const handle = await openFile(folder, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
