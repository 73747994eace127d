import { Readable, addAbortSignal, pipeline } from 'node:stream';
import { createGzip } from 'node:zlib';
import {
  XVA_CHECKSUM_SUFFIX,
  XVA_CHUNK_SIZE,
  xvaChunkCount,
  xvaChunkName,
  type XvaChecksumKind,
  type XvaCompression,
} from './xva.constants';
import { encodeOvaXml, xvaSizeField, type XvaVmRecord } from './ova-xml.codec';
import { encodeTarHeader, tarPadding, TAR_BLOCK } from './tar.codec';
import { xvaChunkChecksum } from './chunk-checksum.codec';
import { zstdFrames } from './xva-compression.codec';
import { XvaFormatError } from './xva-format.error';

export interface XvaDiskSource {
  /** The VDI's id in ova.xml (e.g. `Ref:3`), also the tar folder of its chunks. */
  id: string;
  virtualSize: number;
  /**
   * Chunks (1 MiB) that may hold data; others are taken as zeros and never read. Default: every
   * chunk is read and the all-zero ones are left out.
   */
  allocatedChunks?: readonly number[];
  /** Chunk `index`: 1 MiB, or what is left of the disk for the last one. */
  readChunk(index: number): Promise<Buffer>;
}

export interface XvaStreamOptions {
  vm: XvaVmRecord;
  disks: readonly XvaDiskSource[];
  compression?: XvaCompression;
  /** Default `xxhash` (what current XAPI writes); `sha1` for the older `.checksum` entries. */
  checksum?: XvaChecksumKind;
  /** Modification time stored in the tar headers. */
  timestamp?: Date;
  signal?: AbortSignal;
}

const ZERO_CHUNK = Buffer.alloc(XVA_CHUNK_SIZE);

function isZero(data: Buffer): boolean {
  return data.equals(data.length === XVA_CHUNK_SIZE ? ZERO_CHUNK : ZERO_CHUNK.subarray(0, data.length));
}

function checkOptions(options: XvaStreamOptions): void {
  const vdis = new Map(
    options.vm.objects.filter((object) => object.class === 'VDI').map((object) => [object.id, object]),
  );
  const seen = new Set<string>();
  for (const disk of options.disks) {
    const vdi = vdis.get(disk.id);
    if (vdi === undefined) {
      throw new XvaFormatError(
        'XVA_OPTION',
        `disk ${disk.id} has no VDI object of that id in the VM record; build the record with buildXvaVmRecord or add the VDI`,
      );
    }
    if (seen.has(disk.id)) throw new XvaFormatError('XVA_OPTION', `disk ${disk.id} is listed twice`);
    seen.add(disk.id);
    if (!Number.isSafeInteger(disk.virtualSize) || disk.virtualSize < 0) {
      throw new XvaFormatError(
        'XVA_OPTION',
        `disk ${disk.id} has an invalid virtual size ${disk.virtualSize}`,
      );
    }
    const recorded = xvaSizeField(vdi.snapshot['virtual_size']);
    if (recorded !== disk.virtualSize) {
      throw new XvaFormatError(
        'XVA_OPTION',
        `disk ${disk.id} is ${disk.virtualSize} bytes but its VDI record says virtual_size ${JSON.stringify(vdi.snapshot['virtual_size'])}; they must agree`,
      );
    }
  }
}

/** The chunk indexes to consider, ascending: the allocated ones plus the first and last, always written. */
function* candidateChunks(disk: XvaDiskSource): Generator<number> {
  const count = xvaChunkCount(disk.virtualSize);
  if (disk.allocatedChunks === undefined) {
    for (let index = 0; index < count; index++) yield index;
    return;
  }
  const set = new Set(
    disk.allocatedChunks.filter((index) => Number.isInteger(index) && index >= 0 && index < count),
  );
  if (count > 0) {
    set.add(0);
    set.add(count - 1);
  }
  yield* [...set].sort((a, b) => a - b);
}

/**
 * Streams an XVA as XAPI's /export produces it: a ustar archive with ova.xml first, then for each disk
 * `Ref:N/00000000`-style 1 MiB chunks each followed by its checksum entry, all-zero chunks left out
 * except the first and last of a disk (the last one tells the importer the size). Chunks are read
 * only as the consumer pulls, optionally compressed with gzip or zstd.
 */
export function createXvaStream(options: XvaStreamOptions): Readable {
  checkOptions(options);
  const checksumKind = options.checksum ?? 'xxhash';
  const mtime = options.timestamp ?? new Date();

  function* entry(name: string, data: Buffer): Generator<Buffer> {
    yield encodeTarHeader(name, data.length, mtime);
    if (data.length > 0) yield data;
    const padding = tarPadding(data.length);
    if (padding > 0) yield Buffer.alloc(padding);
  }

  async function* tar(): AsyncGenerator<Buffer> {
    yield* entry('ova.xml', Buffer.from(encodeOvaXml(options.vm), 'utf8'));
    for (const disk of options.disks) {
      const count = xvaChunkCount(disk.virtualSize);
      for (const index of candidateChunks(disk)) {
        options.signal?.throwIfAborted();
        const expected = Math.min(XVA_CHUNK_SIZE, disk.virtualSize - index * XVA_CHUNK_SIZE);
        let data = await disk.readChunk(index);
        if (data.length !== expected) {
          if (data.length === XVA_CHUNK_SIZE && index === count - 1) data = data.subarray(0, expected);
          else {
            throw new XvaFormatError(
              'XVA_CHUNK_SIZE',
              `readChunk(${index}) of disk ${disk.id} returned ${data.length} bytes, expected ${expected}`,
            );
          }
        }
        if (index !== 0 && index !== count - 1 && isZero(data)) continue;
        const name = xvaChunkName(disk.id, index);
        yield* entry(name, data);
        const checksum = await xvaChunkChecksum(checksumKind, data);
        yield* entry(`${name}${XVA_CHECKSUM_SUFFIX[checksumKind]}`, Buffer.from(checksum, 'latin1'));
      }
    }
    // End of archive: two zero blocks.
    yield Buffer.alloc(2 * TAR_BLOCK);
  }

  const compression = options.compression ?? 'none';
  let stream: Readable;
  switch (compression) {
    case 'none':
      stream = Readable.from(tar(), { objectMode: false });
      break;
    case 'zstd':
      stream = Readable.from(zstdFrames(tar()), { objectMode: false });
      break;
    case 'gzip': {
      const gzip = createGzip();
      pipeline(Readable.from(tar(), { objectMode: false }), gzip, () => {
        // Errors reach the consumer through gzip, which pipeline destroys with them.
      });
      stream = gzip;
      break;
    }
  }
  if (options.signal !== undefined) addAbortSignal(options.signal, stream);
  return stream;
}
