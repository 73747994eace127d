import { chunkCipher, type Repository } from '@haven/repository';
import { ArchiveError } from './archive.errors';

/**
 * Sealing of the objects of an archive in an encrypted repository. A sealed object is
 *
 *   0 magic "HVAS" (segment) or "HVAM" (manifest)   4 version (1)   5 cipher id (1 = AES-256-GCM)
 *   6 reserved (2 bytes, zero)                       8 nonce (12) | ciphertext | tag (16)
 *
 * with the 8-byte header and `haven-archive|<archive id>|segment|<index>` (or `|manifest`) as
 * associated data: a segment moved to another archive or position does not authenticate. The key is
 * derived from the repository's master key for this purpose only. Without encryption, segments are
 * the plain XVA bytes and the manifest plain JSON.
 */
export const ARCHIVE_SEAL_PURPOSE = 'full-backup archive seal';
const HEADER_LENGTH = 8;
const SEALED_VERSION = 1;
const MAGIC = { segment: 'HVAS', manifest: 'HVAM' } as const;
type SealedKind = keyof typeof MAGIC;

const cipher = chunkCipher('aes-256-gcm');

export class ArchiveSealer {
  private constructor(private readonly key: Buffer | undefined) {}

  static forRepository(repository: Repository): ArchiveSealer {
    return new ArchiveSealer(repository.externalKey(ARCHIVE_SEAL_PURPOSE));
  }

  /** A sealer with a raw 32-byte key (undefined: plain objects). */
  static withKey(key: Buffer | undefined): ArchiveSealer {
    if (key !== undefined && key.length !== 32)
      throw new ArchiveError('INVALID_ARGUMENT', `an archive key has 32 bytes, not ${key.length}`);
    return new ArchiveSealer(key);
  }

  get encrypted(): boolean {
    return this.key !== undefined;
  }

  /** Bytes a sealed object adds to its plaintext. */
  get overhead(): number {
    return this.key === undefined ? 0 : HEADER_LENGTH + cipher.overhead;
  }

  sealSegment(archiveId: string, index: number, plaintext: Buffer): Buffer {
    return this.seal('segment', `segment|${index}`, archiveId, plaintext);
  }

  /**
   * The segment sealed into `target` (at least plaintext + overhead bytes, e.g. a pooled buffer):
   * the view of it that holds the sealed object. Without encryption, the plaintext itself.
   */
  sealSegmentInto(archiveId: string, index: number, plaintext: Buffer, target: Buffer): Buffer {
    if (this.key === undefined) return plaintext;
    const header = headerOf('segment');
    header.copy(target, 0);
    const ad = associatedData(header, archiveId, `segment|${index}`);
    const length = cipher.sealInto(this.key, plaintext, ad, target, HEADER_LENGTH);
    return target.subarray(0, HEADER_LENGTH + length);
  }

  /**
   * The plaintext of a stored segment, decrypted in place (a view of `stored`, which is overwritten):
   * no second buffer of the segment's size. `key` names it in the error when it does not open.
   */
  openSegment(archiveId: string, index: number, stored: Buffer, key: string): Buffer {
    return this.open('segment', `segment|${index}`, archiveId, stored, key, true);
  }

  sealManifest(archiveId: string, plaintext: Buffer): Buffer {
    return this.seal('manifest', 'manifest', archiveId, plaintext);
  }

  openManifest(archiveId: string, stored: Buffer, key: string): Buffer {
    return this.open('manifest', 'manifest', archiveId, stored, key);
  }

  private seal(kind: SealedKind, what: string, archiveId: string, plaintext: Buffer): Buffer {
    if (this.key === undefined) return plaintext;
    const header = headerOf(kind);
    return cipher.seal(this.key, plaintext, associatedData(header, archiveId, what), header);
  }

  private open(
    kind: SealedKind,
    what: string,
    archiveId: string,
    stored: Buffer,
    key: string,
    inPlace = false,
  ): Buffer {
    if (this.key === undefined) return stored;
    const damaged = (reason: string): ArchiveError =>
      new ArchiveError(
        kind === 'segment' ? 'SEGMENT_DAMAGED' : 'MANIFEST_DAMAGED',
        `${kind} ${key} of archive ${archiveId} is damaged: ${reason}`,
        key,
      );
    if (stored.length < HEADER_LENGTH + cipher.overhead)
      throw damaged(`${stored.length} bytes is shorter than a sealed ${kind}`);
    const magic = stored.toString('latin1', 0, 4);
    if (magic !== MAGIC[kind])
      throw damaged(
        `it is not sealed (magic "${magic}", expected "${MAGIC[kind]}") in an encrypted repository`,
      );
    if (stored[4] !== SEALED_VERSION) throw damaged(`sealed format version ${stored[4]} is not supported`);
    if (stored[5] !== cipher.id) throw damaged(`cipher id ${stored[5]} is not supported`);
    const header = stored.subarray(0, HEADER_LENGTH);
    try {
      const ad = associatedData(header, archiveId, what);
      const sealed = stored.subarray(HEADER_LENGTH);
      return inPlace ? cipher.openInPlace(this.key, sealed, ad) : cipher.open(this.key, sealed, ad);
    } catch {
      throw damaged(
        'AES-256-GCM authentication failed (altered bytes, the wrong repository key, or an object moved from another archive)',
      );
    }
  }
}

function headerOf(kind: SealedKind): Buffer {
  const header = Buffer.alloc(HEADER_LENGTH);
  header.write(MAGIC[kind], 0, 'latin1');
  header[4] = SEALED_VERSION;
  header[5] = cipher.id;
  return header;
}

function associatedData(header: Buffer, archiveId: string, what: string): Buffer {
  return Buffer.concat([header, Buffer.from(`haven-archive|${archiveId}|${what}`)]);
}
