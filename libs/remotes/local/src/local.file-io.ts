import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

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
 * Writes the `length` bytes at the start of `padded` to a file opened with O_DIRECT: `padded` is
 * those bytes plus padding to an aligned length (directWriteView), written whole, then cut off by
 * truncating the file to `length`. A write the file system refuses throws EINVAL.
 */
export async function writeDirect(handle: FileHandle, padded: Buffer, length: number): Promise<void> {
  let written = 0;
  while (written < padded.length) {
    const { bytesWritten } = await handle.write(padded, written, padded.length - written, written);
    // A short write leaves an unaligned offset, which the next write refuses (EINVAL).
    if (bytesWritten === 0) throw new Error(`direct write stopped at byte ${written} of ${padded.length}`);
    written += bytesWritten;
  }
  if (length < padded.length) await handle.truncate(length);
}

/** fdatasync of a file by name: its content and size, what reading it back needs. */
export async function syncFile(path: string): Promise<void> {
  const handle = await open(path, constants.O_RDONLY);
  try {
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** fsync of a folder: the names created or removed in it. */
export async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
