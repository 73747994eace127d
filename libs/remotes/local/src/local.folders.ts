import { mkdir, stat } from 'node:fs/promises';
import { dirname, sep } from 'node:path';
import { DriverError } from '@haven/remote-sdk';

/**
 * The remote's own folder is gone. It is never created again: on a share that is not mounted (or
 * a folder removed), a new one would take the backups to whatever disk holds the path now.
 */
export function remoteFolderMissing(root: string): DriverError {
  return new DriverError(
    'INVALID_ARGUMENT',
    `the remote's folder ${root} does not exist (is the share that holds it mounted?); Haven does not create a remote's own folder: mount the share or create the folder, or fix the remote's path`,
  );
}

/**
 * Creates `folder` and its missing parents below `root`, never `root` itself (remoteFolderMissing
 * when it is gone; `folder` may be `root`, which is then only checked). Answers the first (outermost) folder it created, if any: a folder another
 * writer creates meanwhile is fine, a file in the way fails with mkdir's own error.
 */
export async function makeFolderBelow(root: string, folder: string): Promise<string | undefined> {
  if (folder === root) {
    if (await isFolder(root)) return undefined;
    throw remoteFolderMissing(root);
  }
  if (!folder.startsWith(root === sep ? sep : root + sep))
    throw new Error(`${folder} is not inside the remote's folder ${root}`);
  try {
    await mkdir(folder);
    return folder;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      await thereAlready(folder, error);
      return undefined;
    }
  }
  // Its parent is missing: that one first (up to the root), then this one.
  const first = await makeFolderBelow(root, dirname(folder));
  try {
    await mkdir(folder);
  } catch (error) {
    await thereAlready(folder, error);
    return first;
  }
  return first ?? folder;
}

/** Resolves when mkdir failed because the folder exists; throws mkdir's error otherwise. */
async function thereAlready(folder: string, error: unknown): Promise<void> {
  if ((error as NodeJS.ErrnoException).code === 'EEXIST' && (await isFolder(folder))) return;
  throw error;
}

async function isFolder(path: string): Promise<boolean> {
  const info = await stat(path).catch(() => undefined);
  return info?.isDirectory() === true;
}
