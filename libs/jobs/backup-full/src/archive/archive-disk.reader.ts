import { Readable } from 'node:stream';
import { createVhdStream, vhdStreamLength, VHD_BLOCK_SIZE } from '@haven/vhd';
import {
  readXvaStream,
  XvaFormatError,
  XVA_CHUNK_SIZE,
  xvaChunkCount,
  type XvaDiskInfo,
  type XvaStreamChunk,
  type XvaStreamItem,
} from '@haven/xva';
import { ArchiveError } from './archive.errors';
import type { ArchiveManifest } from './archive.manifest';
import type { ArchiveStore } from './archive.store';

/** A disk inside a full-backup archive, as its XVA's ova.xml describes it. */
export interface ArchiveDisk {
  /**
   * The disk's key: its VBD position (userdevice) as `backup.incremental` keys disks, or its tar
   * folder when ova.xml gives no usable position.
   */
  key: string;
  /** The tar folder of its chunks in the XVA, `Ref:NN`. */
  folder: string;
  /** VDI uuid and name label at backup time (those of the snapshot's VDI). */
  uuid: string | undefined;
  name: string | undefined;
  virtualSize: number;
}

export interface ArchiveDiskRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

const ZERO_CHUNK = Buffer.alloc(XVA_CHUNK_SIZE);
const CHUNKS_PER_BLOCK = VHD_BLOCK_SIZE / XVA_CHUNK_SIZE;

function isZero(data: Buffer): boolean {
  return data.equals(ZERO_CHUNK.subarray(0, data.length));
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** `0`, `1`… for numeric userdevices and `xvda`-style names; undefined otherwise. */
function positionOf(userdevice: string | undefined): number | undefined {
  if (userdevice === undefined) return undefined;
  if (/^\d+$/.test(userdevice)) return Number(userdevice);
  const letter = /^(?:xv|h|s)d([a-z])$/.exec(userdevice)?.[1];
  return letter === undefined ? undefined : letter.charCodeAt(0) - 97;
}

function archiveDisks(disks: readonly XvaDiskInfo[]): ArchiveDisk[] {
  const positions = disks.map((disk) => positionOf(text(disk.vbd?.snapshot['userdevice'])));
  return disks.map((disk, index) => {
    const position = positions[index];
    // Two VBDs at one position (a broken record) would make keys ambiguous: those fall back to the folder.
    const unique = position !== undefined && positions.filter((other) => other === position).length === 1;
    return {
      key: unique ? String(position) : disk.id,
      folder: disk.id,
      uuid: text(disk.vdi.snapshot['uuid']),
      name: text(disk.vdi.snapshot['name_label']),
      virtualSize: disk.virtualSize,
    };
  });
}

/** A malformed XVA inside an archive: the archive is damaged (its segments were stored so). */
function damaged(archiveId: string, error: unknown): unknown {
  return error instanceof XvaFormatError
    ? new ArchiveError('ARCHIVE_DAMAGED', `archive ${archiveId} is damaged: ${error.message}`, undefined, {
        cause: error,
      })
    : error;
}

/** Zeros in pieces of at most one chunk (one shared, never written, buffer). */
function* zeros(length: number): Generator<Buffer> {
  for (let left = length; left > 0; left -= XVA_CHUNK_SIZE)
    yield ZERO_CHUNK.subarray(0, Math.min(XVA_CHUNK_SIZE, left));
}

/**
 * The disks of a full-backup archive, read out of its XVA: the archive is one sequential stream
 * (possibly compressed by the host), so every read decompresses and walks the tar from its start,
 * checking each chunk's checksum as the XVA reader does. Memory stays at a few segments and one
 * VHD block whatever the disk's size; a damaged archive makes the stream fail, never end short.
 */
export class ArchiveDiskReader {
  constructor(
    private readonly archives: ArchiveStore,
    private readonly manifest: ArchiveManifest,
  ) {}

  /** The XVA's items in order: metadata, then every checked chunk of every disk. */
  private items(signal: AbortSignal | undefined, readAhead?: number): AsyncGenerator<XvaStreamItem> {
    return readXvaStream(this.archives.segments(this.manifest, signal, readAhead));
  }

  /** The disks ova.xml lists, read from the archive's first segment(s) only. */
  async disks(signal?: AbortSignal): Promise<ArchiveDisk[]> {
    // No read-ahead: ova.xml sits at the start, usually within the first segment.
    const items = this.items(signal, 0);
    try {
      const first = await items.next();
      if (first.done === true || first.value.type !== 'metadata')
        throw new ArchiveError(
          'ARCHIVE_DAMAGED',
          `archive ${this.manifest.id} does not start with the XVA's ova.xml`,
        );
      return archiveDisks(first.value.disks);
    } catch (error) {
      throw damaged(this.manifest.id, error);
    } finally {
      await items.return(undefined);
    }
  }

  /** The disk of that key; ARCHIVE_DISK_NOT_FOUND naming the keys there are otherwise. */
  async disk(key: string, signal?: AbortSignal): Promise<ArchiveDisk> {
    const disks = await this.disks(signal);
    const found = disks.find((disk) => disk.key === key);
    if (found === undefined)
      throw new ArchiveError(
        'ARCHIVE_DISK_NOT_FOUND',
        `archive ${this.manifest.id} has no disk "${key}" (its disks: ${disks.map((disk) => disk.key).join(', ') || 'none'})`,
      );
    return found;
  }

  /** That disk's chunks in ascending order; stops reading the archive after its last chunk. */
  private async *chunks(disk: ArchiveDisk, signal: AbortSignal | undefined): AsyncGenerator<XvaStreamChunk> {
    const last = xvaChunkCount(disk.virtualSize) - 1;
    for await (const item of this.items(signal)) {
      if (item.type === 'metadata') {
        const described = item.disks.find((candidate) => candidate.id === disk.folder);
        if (described?.virtualSize !== disk.virtualSize)
          throw new ArchiveError(
            'ARCHIVE_DAMAGED',
            `archive ${this.manifest.id} no longer describes disk ${disk.key} (${disk.folder}) as it did`,
          );
        continue;
      }
      if (item.diskId !== disk.folder) continue;
      yield item;
      // The disk is complete and every one of its chunks checked: the rest of the archive is other disks.
      if (item.chunkIndex === last) return;
    }
  }

  /**
   * The raw disk (absent chunks as zeros), or the bytes `range` covers. The archive is sequential:
   * a range is served by reading from the start of the archive and discarding what comes before it,
   * so resuming deep into a disk costs reading the archive up to there.
   */
  createRawStream(
    disk: ArchiveDisk,
    options: { range?: ArchiveDiskRange; signal?: AbortSignal } = {},
  ): Readable {
    const start = options.range?.start ?? 0;
    const end = options.range?.end ?? disk.virtualSize - 1;
    if (
      !(
        Number.isSafeInteger(start) &&
        Number.isSafeInteger(end) &&
        0 <= start &&
        start <= end &&
        end < disk.virtualSize
      )
    )
      throw new ArchiveError(
        'INVALID_ARGUMENT',
        `bytes ${start}-${end} are not within disk ${disk.key} of ${disk.virtualSize} bytes`,
      );
    const chunks = (signal: AbortSignal | undefined) => this.chunks(disk, signal);
    async function* raw(): AsyncGenerator<Buffer> {
      // `position`: the next byte of the disk not yet accounted for; only [start, end] is emitted.
      let position = start;
      for await (const chunk of chunks(options.signal)) {
        const chunkStart = chunk.chunkIndex * XVA_CHUNK_SIZE;
        const chunkEnd = chunkStart + chunk.data.length; // exclusive
        if (chunkEnd <= start) continue;
        yield* zeros(Math.min(chunkStart, end + 1) - position);
        if (chunkStart > end) return;
        yield chunk.data.subarray(
          Math.max(start, chunkStart) - chunkStart,
          Math.min(end + 1, chunkEnd) - chunkStart,
        );
        position = Math.min(end + 1, chunkEnd);
        if (position > end) return;
      }
      yield* zeros(end + 1 - position);
    }
    return Readable.from(raw(), { objectMode: false, highWaterMark: 1 });
  }

  /**
   * The 2 MiB VHD blocks of the disk holding any non-zero byte, ascending: one whole pass over the
   * archive up to the disk's last chunk (a VHD's block table comes before its blocks).
   */
  async allocatedBlocks(disk: ArchiveDisk, signal?: AbortSignal): Promise<number[]> {
    const blocks: number[] = [];
    try {
      for await (const chunk of this.chunks(disk, signal)) {
        const block = Math.floor(chunk.chunkIndex / CHUNKS_PER_BLOCK);
        if (blocks.at(-1) !== block && !isZero(chunk.data)) blocks.push(block);
      }
    } catch (error) {
      throw damaged(this.manifest.id, error);
    }
    return blocks;
  }

  /**
   * A dynamic VHD of the disk holding only its non-zero blocks. The block table is written first,
   * so this takes two passes over the archive: `allocatedBlocks` (done here unless given), then
   * the blocks as the VHD writer asks for them. Returns the stream and its exact length.
   */
  async createVhdStream(
    disk: ArchiveDisk,
    options: { signal?: AbortSignal; allocatedBlocks?: readonly number[]; uuid?: string } = {},
  ): Promise<{ stream: Readable; length: number }> {
    const allocated = options.allocatedBlocks ?? (await this.allocatedBlocks(disk, options.signal));
    const wanted = new Set(allocated);
    const chunks = this.chunks(disk, options.signal);
    let pending: XvaStreamChunk | undefined;
    const label = `disk ${disk.key} of archive ${this.manifest.id}`;
    const archiveId = this.manifest.id;
    // createVhdStream asks for the allocated blocks in ascending order: each is assembled from the
    // chunks the second pass yields, absent chunks left as zeros.
    const readBlock = async (index: number): Promise<Buffer> => {
      const blockStart = index * VHD_BLOCK_SIZE;
      const block = Buffer.alloc(Math.min(VHD_BLOCK_SIZE, disk.virtualSize - blockStart));
      for (;;) {
        let next = pending;
        pending = undefined;
        if (next === undefined) {
          const pulled = await chunks.next();
          if (pulled.done === true) return block;
          next = pulled.value;
        }
        const chunkBlock = Math.floor(next.chunkIndex / CHUNKS_PER_BLOCK);
        if (chunkBlock > index) {
          pending = next;
          return block;
        }
        if (chunkBlock < index && !wanted.has(chunkBlock) && !isZero(next.data))
          throw new ArchiveError(
            'ARCHIVE_DAMAGED',
            `${label}: block ${chunkBlock} holds data the first pass over archive ${archiveId} did not see`,
          );
        if (chunkBlock === index) next.data.copy(block, next.chunkIndex * XVA_CHUNK_SIZE - blockStart);
      }
    };
    const vhd = createVhdStream({
      virtualSize: disk.virtualSize,
      allocatedBlocks: allocated,
      readBlock,
      type: 'dynamic',
      ...(options.uuid !== undefined ? { uuid: options.uuid } : {}),
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
    });
    async function* withCleanup(): AsyncGenerator<Buffer> {
      try {
        for await (const part of vhd) yield part as Buffer;
      } finally {
        // Stops the second pass once the last block is out, or when the consumer goes away.
        vhd.destroy();
        await chunks.return(undefined);
      }
    }
    return {
      stream: Readable.from(withCleanup(), { objectMode: false, highWaterMark: 1 }),
      length: vhdStreamLength({ virtualSize: disk.virtualSize, allocatedBlocks: allocated }),
    };
  }
}
