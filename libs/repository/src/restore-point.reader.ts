import { Readable } from 'node:stream';
import { createVhdStream, type VhdDisk } from '@haven/vhd';
import type { Repository } from './repository';
import type { DiskIndex } from './format/disk-index.codec';
import {
  restorePointLabel,
  type RestorePointDisk,
  type RestorePointManifest,
} from './format/restore-point.manifest';
import { RepositoryError } from './repository.errors';
import type { DiskBlock } from './restore-point.writer';

export interface ReadOptions {
  signal?: AbortSignal;
}

export interface StreamOptions extends ReadOptions {
  /** Blocks fetched and decoded ahead of the consumer (memory: 2 MiB each). Default 4. */
  readAhead?: number;
}

export type VhdExportOptions = StreamOptions &
  (
    | { type: 'dynamic'; uuid?: string }
    | {
        type: 'differencing';
        /** The restore point the target already holds: only blocks whose chunk differs are sent. */
        base: DiskReader;
        /** UUID of the VHD / VDI that holds the base. */
        parentUuid: string;
        uuid?: string;
      }
  );

/** One committed restore point, with every disk index loaded (32 bytes per allocated block). */
export class RestorePointReader {
  readonly disks: readonly DiskReader[];

  /** @internal use Repository.openRestorePoint */
  constructor(
    repository: Repository,
    readonly manifest: RestorePointManifest,
    indexes: readonly DiskIndex[],
  ) {
    this.disks = manifest.disks.map((disk, position) => {
      const index = indexes.at(position);
      if (index === undefined) throw new Error(`index of disk ${disk.key} not loaded`);
      return new DiskReader(repository, manifest, disk, index);
    });
  }

  get id(): string {
    return this.manifest.id;
  }

  get label(): string {
    return restorePointLabel(this.manifest);
  }

  disk(key: string): DiskReader {
    const disk = this.disks.find((candidate) => candidate.key === key);
    if (disk === undefined) {
      throw new RepositoryError(
        'DISK_NOT_FOUND',
        `restore point ${this.label} has no disk "${key}" (it has ${this.disks.map((d) => d.key).join(', ') || 'none'})`,
        { restorePoint: this.id, disk: key },
      );
    }
    return disk;
  }
}

/**
 * Random access and streaming of one disk of a restore point. Implements @haven/vhd's VhdDisk, so
 * file restore reads a restore point like any VHD.
 */
export class DiskReader implements VhdDisk {
  /** @internal */
  constructor(
    private readonly repository: Repository,
    readonly restorePoint: RestorePointManifest,
    readonly meta: RestorePointDisk,
    readonly index: DiskIndex,
  ) {}

  /**
   * Block numbers holding data, ascending (absent blocks read as zeros): a new array at each call
   * (8 bytes per allocated block; `index.allocatedBlocks()` walks them without one).
   */
  get allocatedBlocks(): number[] {
    return [...this.index.allocatedBlocks()];
  }

  get key(): string {
    return this.meta.key;
  }

  get virtualSize(): number {
    return this.index.virtualSize;
  }

  get blockSize(): number {
    return this.index.blockSize;
  }

  get blockCount(): number {
    return this.index.blockCount;
  }

  chunkId(index: number): string | undefined {
    return this.index.get(index)?.toString('hex');
  }

  /** One block, checked (never wrong bytes: a damaged chunk throws ChunkIntegrityError). */
  async readBlock(index: number, options: ReadOptions = {}): Promise<Buffer> {
    if (!Number.isInteger(index) || index < 0 || index >= this.blockCount) {
      throw new RepositoryError(
        'INVALID_ARGUMENT',
        `block ${index} is outside disk ${this.key} of restore point ${this.restorePoint.id} (${this.blockCount} blocks)`,
        { restorePoint: this.restorePoint.id, disk: this.key, block: index },
      );
    }
    const id = this.index.get(index);
    const length = this.index.blockLength(index);
    if (id === undefined) return Buffer.alloc(length);
    return this.repository.chunks.read(
      id,
      { restorePoint: restorePointLabel(this.restorePoint), disk: this.key, block: index },
      options.signal,
    );
  }

  /** VhdDisk: same as readBlock (the last block of a disk may be shorter than 2 MiB). */
  readBlockData(index: number): Promise<Buffer> {
    return this.readBlock(index);
  }

  /** Bytes [position, position + length) of the disk (file restore reads through this). */
  async read(position: number, length: number, options: ReadOptions = {}): Promise<Buffer> {
    if (
      !Number.isSafeInteger(position) ||
      !Number.isSafeInteger(length) ||
      position < 0 ||
      length < 0 ||
      position + length > this.virtualSize
    ) {
      throw new RepositoryError(
        'INVALID_ARGUMENT',
        `range ${position}+${length} is outside disk ${this.key} (${this.virtualSize} bytes) of restore point ${this.restorePoint.id}`,
        { restorePoint: this.restorePoint.id, disk: this.key },
      );
    }
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const at = position + done;
      const block = Math.floor(at / this.blockSize);
      const within = at - block * this.blockSize;
      const take = Math.min(length - done, this.index.blockLength(block) - within);
      if (!this.index.has(block)) {
        out.fill(0, done, done + take);
      } else {
        (await this.readBlock(block, options)).copy(out, done, within, within + take);
      }
      done += take;
    }
    return out;
  }

  /** Allocated blocks (or the given ones), decoded with bounded read-ahead, in order. */
  async *blocks(options: StreamOptions & { only?: Iterable<number> } = {}): AsyncGenerator<DiskBlock> {
    const wanted = (options.only ?? this.index.allocatedBlocks())[Symbol.iterator]();
    const readAhead = Math.max(1, options.readAhead ?? 4);
    const pending: { index: number; data: Promise<Buffer> }[] = [];
    let exhausted = false;
    const fill = (): void => {
      while (pending.length < readAhead && !exhausted) {
        const next = wanted.next();
        if (next.done === true) {
          exhausted = true;
          return;
        }
        const index = next.value;
        const data = this.readBlock(index, options);
        // Read-ahead may be abandoned by a consumer that stops early: never an unhandled rejection.
        data.catch(() => undefined);
        pending.push({ index, data });
      }
    };
    fill();
    while (pending.length > 0) {
      const head = pending.shift() as { index: number; data: Promise<Buffer> };
      const data = await head.data;
      fill();
      yield { index: head.index, data };
    }
  }

  /** The whole disk as raw bytes (holes as zeros). */
  createReadStream(options: StreamOptions = {}): Readable {
    const raw = async function* (this: DiskReader): AsyncGenerator<Buffer> {
      let position = 0;
      for await (const block of this.blocks(options)) {
        const start = block.index * this.blockSize;
        yield* zeros(start - position);
        yield block.data;
        position = start + block.data.length;
      }
      yield* zeros(this.virtualSize - position);
    };
    return Readable.from(raw.call(this), { objectMode: false, highWaterMark: 1 });
  }

  /**
   * A VHD of this disk: dynamic (every allocated block), or differencing against `base` (only the
   * blocks whose chunk differs, zero blocks included where the base has data).
   */
  createVhdStream(options: VhdExportOptions): Readable {
    const cache = new Map<number, Promise<Buffer>>();
    let allocated: number[];
    let readBlock: (index: number) => Promise<Buffer>;
    if (options.type === 'dynamic') {
      allocated = this.allocatedBlocks;
      readBlock = (index) => this.readBlock(index, options);
    } else {
      const base = options.base;
      if (base.blockSize !== this.blockSize) {
        throw new RepositoryError('INVALID_ARGUMENT', `base disk ${base.key} has another block size`, {
          restorePoint: this.restorePoint.id,
          disk: this.key,
        });
      }
      allocated = this.changedBlocks(base);
      readBlock = (index) => this.readBlock(index, options);
    }
    // createVhdStream pulls blocks one at a time; prefetch ahead of it to overlap remote reads.
    const readAhead = Math.max(1, options.readAhead ?? 4);
    const prefetched = (index: number): Promise<Buffer> => {
      // A search of the sorted blocks, not a map of them (tens of MiB for a dense 2 TiB disk).
      const position = Math.max(0, positionIn(allocated, index));
      for (let ahead = position; ahead < Math.min(allocated.length, position + readAhead); ahead++) {
        const block = allocated[ahead];
        if (!cache.has(block)) {
          const data = readBlock(block);
          data.catch(() => undefined);
          cache.set(block, data);
        }
      }
      const data = cache.get(index) ?? readBlock(index);
      cache.delete(index);
      return data;
    };
    return createVhdStream({
      virtualSize: this.virtualSize,
      allocatedBlocks: allocated,
      readBlock: prefetched,
      type: options.type,
      ...(options.uuid !== undefined ? { uuid: options.uuid } : {}),
      ...(options.type === 'differencing' ? { parentUuid: options.parentUuid } : {}),
      ...(options.signal !== undefined ? { signal: options.signal } : {}),
    });
  }

  /** Blocks whose content differs from `base` (by chunk id; a block beyond the base's size counts as changed if it has data). */
  changedBlocks(base: DiskReader): number[] {
    const changed: number[] = [];
    for (let block = 0; block < this.blockCount; block++) {
      const mine = this.index.get(block);
      const theirs = block < base.blockCount ? base.index.get(block) : undefined;
      if (mine === undefined && theirs === undefined) continue;
      if (mine !== undefined && theirs !== undefined && mine.equals(theirs)) continue;
      changed.push(block);
    }
    return changed;
  }
}

/** Position of `value` in ascending `sorted`, or -1. */
function positionIn(sorted: readonly number[], value: number): number {
  let low = 0;
  let high = sorted.length - 1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    const at = sorted[middle];
    if (at === value) return middle;
    if (at < value) low = middle + 1;
    else high = middle - 1;
  }
  return -1;
}

const ZERO_PIECE = 2 * 1024 * 1024;

function* zeros(length: number): Generator<Buffer> {
  for (let left = length; left > 0; left -= ZERO_PIECE) yield Buffer.alloc(Math.min(ZERO_PIECE, left));
}
