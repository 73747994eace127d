import { CHUNK_ID_LENGTH } from './format/disk-index.codec';
import { RepositoryError } from './repository.errors';
import { SortedChunkIds } from './sorted-chunk-ids';

/**
 * Every chunk object of a repository, with its size and time: 48 bytes a chunk (its id in a
 * `SortedChunkIds`, its size and time in typed arrays at the same position), where a `Map` of hex
 * keys to objects took ~250 bytes. A verify or a GC of a repository of millions of chunks runs on
 * a transfer worker's memory. Built from a listing of chunks/, which remotes give in ascending key
 * order (the remote contract): an id out of order is refused, since positions would not match.
 */
export class ChunkListing {
  private readonly idSet = new SortedChunkIds();
  private sizes = new Float64Array(1024);
  private times = new Float64Array(1024);
  private count = 0;
  /** Bytes of all the chunk objects. */
  totalBytes = 0;

  constructor(private readonly remoteName: string) {}

  get size(): number {
    return this.count;
  }

  /** The next chunk of the listing: its id must sort after the previous one's. */
  add(id: Buffer, size: number, modifiedAt: Date): void {
    if (id.length !== CHUNK_ID_LENGTH)
      throw new RangeError(`a chunk id is ${CHUNK_ID_LENGTH} bytes, got ${id.length}`);
    if (this.count === this.sizes.length) {
      const capacity = Math.ceil(this.count * 1.5);
      const sizes = new Float64Array(capacity);
      sizes.set(this.sizes);
      this.sizes = sizes;
      const times = new Float64Array(capacity);
      times.set(this.times);
      this.times = times;
    }
    if (!this.idSet.appendAscending(id))
      throw new RepositoryError(
        'INVALID_ARGUMENT',
        `remote ${this.remoteName} listed chunk ${id.toString('hex')} after ${this.idSet.idAt(this.count - 1).toString('hex')}: a remote must list keys in ascending order`,
      );
    this.sizes[this.count] = size;
    this.times[this.count] = modifiedAt.getTime();
    this.count++;
    this.totalBytes += size;
  }

  has(id: Buffer): boolean {
    return this.idSet.has(id);
  }

  /** Where `id` is in the listing (0 to size - 1), or -1. */
  positionOf(id: Buffer): number {
    return this.idSet.positionOf(id);
  }

  /** Bytes of the chunk's object, or undefined when the listing has no such chunk. */
  sizeOf(id: Buffer): number | undefined {
    const position = this.idSet.positionOf(id);
    return position < 0 ? undefined : this.sizes[position];
  }

  /** The ids in ascending order, each a view. */
  ids(): Iterable<Buffer> {
    return this.idSet;
  }

  /** The id at `position` (0 to size - 1, ascending): a view. */
  idAt(position: number): Buffer {
    return this.idSet.idAt(position);
  }

  sizeAt(position: number): number {
    return this.sizes[position] ?? 0;
  }

  /** When the object at `position` was last written, in milliseconds since the epoch. */
  modifiedAt(position: number): number {
    return this.times[position] ?? 0;
  }
}
