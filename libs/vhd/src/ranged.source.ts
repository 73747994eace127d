import { open, type FileHandle } from 'node:fs/promises';

/** Reads `length` bytes at `offset`; may return fewer only at the end of the object. */
export type RangedRead = (offset: number, length: number) => Promise<Buffer>;

/** Any object readable by range: a local file, a remote object, a buffer. */
export interface RangedSource {
  size: number;
  read: RangedRead;
  close?(): Promise<void>;
}

/** A local file as a ranged source; close it when done. */
export async function openFileSource(path: string): Promise<RangedSource & { close(): Promise<void> }> {
  const handle: FileHandle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    return {
      size,
      read: async (offset, length) => {
        const buffer = Buffer.allocUnsafe(length);
        let filled = 0;
        while (filled < length) {
          const { bytesRead } = await handle.read(buffer, filled, length - filled, offset + filled);
          if (bytesRead === 0) break;
          filled += bytesRead;
        }
        return filled === length ? buffer : buffer.subarray(0, filled);
      },
      close: () => handle.close(),
    };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** An in-memory buffer as a ranged source (tests, small images). */
export function bufferSource(buffer: Buffer): RangedSource {
  return {
    size: buffer.length,
    read: (offset, length) =>
      Promise.resolve(buffer.subarray(offset, Math.min(offset + length, buffer.length))),
  };
}
