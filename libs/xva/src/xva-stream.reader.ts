import type { Readable } from 'node:stream';
import { ByteStreamCursor } from '@haven/vhd';
import {
  XVA_CHUNK_SIZE,
  XVA_MAX_OVA_XML_SIZE,
  xvaChunkCount,
  type XvaChecksumKind,
  type XvaCompression,
} from './xva.constants';
import { decodeOvaXml, type XvaMetadata } from './ova-xml.codec';
import { decodeTarHeader, tarPadding, TAR_BLOCK, type TarHeader } from './tar.codec';
import { xvaChunkChecksum } from './chunk-checksum.codec';
import { detectXvaCompression, gzipDecode, zstdDecode } from './xva-compression.codec';
import { XvaFormatError } from './xva-format.error';

export interface XvaStreamMetadata extends XvaMetadata {
  type: 'metadata';
  compression: XvaCompression;
}

export interface XvaStreamChunk {
  type: 'chunk';
  diskId: string;
  chunkIndex: number;
  /** 1 MiB, or the remainder of the disk for its last chunk. */
  data: Buffer;
  /** Which checksum entry vouched for it. */
  checksum: XvaChecksumKind;
}

export type XvaStreamItem = XvaStreamMetadata | XvaStreamChunk;

const CHUNK_ENTRY = /^(.+)\/(\d{8})$/;
const CHECKSUM_ENTRY = /^(.+)\/(\d{8})\.(xxhash|checksum)$/;

function toBuffers(source: Readable | AsyncIterable<Buffer | Uint8Array>): AsyncIterable<Buffer> {
  return (async function* () {
    for await (const chunk of source as AsyncIterable<Buffer | Uint8Array | string>) {
      yield typeof chunk === 'string'
        ? Buffer.from(chunk)
        : Buffer.isBuffer(chunk)
          ? chunk
          : Buffer.from(chunk);
    }
  })();
}

/** Peeks at the first bytes to pick the decoder, then replays them. */
async function decompressed(
  source: AsyncIterable<Buffer>,
): Promise<{ compression: XvaCompression; bytes: AsyncIterable<Buffer> }> {
  const iterator = source[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let headBytes = 0;
  let done = false;
  while (headBytes < 4) {
    const next = await iterator.next();
    if (next.done === true) {
      done = true;
      break;
    }
    head.push(next.value);
    headBytes += next.value.length;
  }
  const compression = detectXvaCompression(Buffer.concat(head));
  async function* replay(): AsyncGenerator<Buffer> {
    yield* head;
    if (done) return;
    for (;;) {
      const next = await iterator.next();
      if (next.done === true) return;
      yield next.value;
    }
  }
  switch (compression) {
    case 'none':
      return { compression, bytes: replay() };
    case 'gzip':
      return { compression, bytes: gzipDecode(replay()) };
    case 'zstd':
      return { compression, bytes: zstdDecode(replay()) };
  }
}

class TarCursor {
  constructor(private readonly cursor: ByteStreamCursor) {}

  get position(): number {
    return this.cursor.position;
  }

  /** The next entry header; undefined at the end-of-archive marker. */
  async next(): Promise<TarHeader | undefined> {
    const at = this.cursor.position;
    const block = await this.cursor.read(TAR_BLOCK);
    if (block.length === 0) {
      throw new XvaFormatError(
        'XVA_TRUNCATED',
        'the archive ends without its end-of-archive marker: the export was cut short',
        undefined,
        at,
      );
    }
    if (block.length < TAR_BLOCK) {
      throw new XvaFormatError('XVA_TRUNCATED', 'the archive ends inside a tar header', undefined, at);
    }
    const header = decodeTarHeader(block, at);
    if (header === undefined) return undefined;
    if (header.type !== '0' && header.type !== '\0') {
      throw new XvaFormatError(
        'XVA_UNKNOWN_ENTRY',
        `tar entry of type "${header.type}" is not a regular file; XVA archives hold only files`,
        header.name,
        at,
      );
    }
    return header;
  }

  async body(header: TarHeader): Promise<Buffer> {
    const at = this.cursor.position;
    const data = await this.cursor.read(header.size);
    if (data.length < header.size) {
      throw new XvaFormatError(
        'XVA_TRUNCATED',
        `the archive ends inside an entry: ${data.length} of ${header.size} bytes`,
        header.name,
        at + data.length,
      );
    }
    const padding = tarPadding(header.size);
    if ((await this.cursor.skip(padding)) < padding) {
      throw new XvaFormatError(
        'XVA_TRUNCATED',
        'the archive ends inside entry padding',
        header.name,
        this.cursor.position,
      );
    }
    return data;
  }

  /** Raw bytes after the end-of-archive marker (tar pads archives with zeros). */
  trailing(length: number): Promise<Buffer> {
    return this.cursor.read(length);
  }

  async close(): Promise<void> {
    await this.cursor.close();
  }
}

/**
 * Reads an XVA (plain, gzip or zstd, detected by magic) strictly in order: yields the parsed ova.xml
 * first, then each chunk `{ diskId, chunkIndex, data }` after checking it against its checksum entry.
 * Keep-alive entries (empty chunks XAPI sends on slow exports) are skipped. The end of the archive is
 * checked: every disk must have its last chunk, or the export was cut short.
 */
export async function* readXvaStream(
  source: Readable | AsyncIterable<Buffer | Uint8Array>,
): AsyncGenerator<XvaStreamItem, void, undefined> {
  const { compression, bytes } = await decompressed(toBuffers(source));
  const tar = new TarCursor(new ByteStreamCursor(bytes));
  try {
    const first = await tar.next();
    if (first?.name !== 'ova.xml') {
      throw new XvaFormatError(
        'XVA_OVA_XML_MISSING',
        `the archive starts with ${first === undefined ? 'nothing' : `"${first.name}"`} instead of ova.xml: it is not an XVA`,
        first?.name,
        0,
      );
    }
    if (first.size > XVA_MAX_OVA_XML_SIZE) {
      throw new XvaFormatError(
        'XVA_OVA_XML_TOO_LARGE',
        `ova.xml is ${first.size} bytes, more than the ${XVA_MAX_OVA_XML_SIZE} accepted`,
        'ova.xml',
      );
    }
    const metadata = decodeOvaXml((await tar.body(first)).toString('utf8'));
    yield { type: 'metadata', compression, ...metadata };

    const disks = new Map(metadata.disks.map((disk) => [disk.id, disk]));
    const lastIndex = new Map<string, number>();
    for (;;) {
      const at = tar.position;
      const header = await tar.next();
      if (header === undefined) break;
      const match = CHUNK_ENTRY.exec(header.name);
      if (match === null) {
        throw new XvaFormatError(
          'XVA_UNKNOWN_ENTRY',
          CHECKSUM_ENTRY.test(header.name)
            ? 'checksum entry without its chunk before it'
            : 'unexpected tar entry in an XVA',
          header.name,
          at,
        );
      }
      const [, diskId = '', indexText = ''] = match;
      const chunkIndex = Number(indexText);
      const disk = disks.get(diskId);
      if (disk === undefined) {
        throw new XvaFormatError(
          'XVA_UNKNOWN_DISK',
          `chunk of ${diskId}, which ova.xml does not describe as a VDI`,
          header.name,
          at,
        );
      }
      const keepAlive = header.size === 0;
      const expected = Math.min(XVA_CHUNK_SIZE, disk.virtualSize - chunkIndex * XVA_CHUNK_SIZE);
      if (!keepAlive) {
        if (chunkIndex >= xvaChunkCount(disk.virtualSize) || header.size !== expected) {
          throw new XvaFormatError(
            'XVA_CHUNK_SIZE',
            `chunk ${chunkIndex} of ${diskId} is ${header.size} bytes; a ${disk.virtualSize}-byte disk needs ${expected > 0 ? expected : 'no such chunk'}`,
            header.name,
            at,
          );
        }
        if (chunkIndex <= (lastIndex.get(diskId) ?? -1)) {
          throw new XvaFormatError(
            'XVA_CHUNK_ORDER',
            `chunk ${chunkIndex} of ${diskId} comes after chunk ${lastIndex.get(diskId) ?? -1}; chunks must ascend`,
            header.name,
            at,
          );
        }
      }
      const data = await tar.body(header);
      const checksumAt = tar.position;
      const checksumHeader = await tar.next();
      const checksumMatch = checksumHeader === undefined ? null : CHECKSUM_ENTRY.exec(checksumHeader.name);
      if (
        checksumHeader === undefined ||
        checksumMatch === null ||
        `${checksumMatch[1]}/${checksumMatch[2]}` !== header.name
      ) {
        throw new XvaFormatError(
          'XVA_CHECKSUM_MISSING',
          `chunk is not followed by its checksum entry (found ${checksumHeader === undefined ? 'the end' : `"${checksumHeader.name}"`})`,
          header.name,
          checksumAt,
        );
      }
      if (checksumHeader.size > 256) {
        throw new XvaFormatError(
          'XVA_CHECKSUM_MISMATCH',
          `checksum entry is ${checksumHeader.size} bytes long`,
          checksumHeader.name,
        );
      }
      const kind: XvaChecksumKind = checksumMatch[3] === 'xxhash' ? 'xxhash' : 'sha1';
      const stored = (await tar.body(checksumHeader)).toString('latin1').trim().toLowerCase();
      const computed = (await xvaChunkChecksum(kind, data)).toLowerCase();
      if (stored !== computed) {
        throw new XvaFormatError(
          'XVA_CHECKSUM_MISMATCH',
          `chunk ${chunkIndex} of ${diskId} hashes to ${computed} (${kind}) but its checksum entry says ${stored}: the data is damaged`,
          header.name,
          at,
        );
      }
      if (keepAlive) continue;
      lastIndex.set(diskId, chunkIndex);
      yield { type: 'chunk', diskId, chunkIndex, data, checksum: kind };
    }
    // Disks without any chunk are legitimate (CD images, disks left out of the export); a disk that
    // started must have reached its last chunk, which XAPI always writes.
    for (const disk of metadata.disks) {
      const count = xvaChunkCount(disk.virtualSize);
      const last = lastIndex.get(disk.id);
      if (last !== undefined && last !== count - 1) {
        throw new XvaFormatError(
          'XVA_TRUNCATED',
          `disk ${disk.id} ends at chunk ${last} but its last chunk is ${count - 1}: the export was cut short`,
          disk.id,
        );
      }
    }
    // Whatever follows the end-of-archive marker must be zero padding.
    for (;;) {
      const at = tar.position;
      const block = await tar.trailing(64 * 1024);
      if (block.length === 0) break;
      if (!block.every((byte) => byte === 0)) {
        throw new XvaFormatError('XVA_UNKNOWN_ENTRY', 'data after the end-of-archive marker', undefined, at);
      }
    }
  } finally {
    await tar.close();
  }
}
