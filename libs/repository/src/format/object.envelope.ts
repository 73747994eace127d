import { createHash, timingSafeEqual } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ReplayableBody } from '@haven/remote-sdk';
import type { ChunkCodec, CodecName } from '../codecs/chunk-codec';
import { chunkCodec, chunkCodecById } from '../codecs/codec.registry';
import type { ChunkCipher } from '../ciphers/chunk-cipher';
import { chunkCipherById } from '../ciphers/cipher.registry';

/**
 * Every object the repository writes, except repository.json, is an envelope:
 *
 *   0  magic (4 bytes, one per kind)      8  plaintext length (u32 BE)
 *   4  format version (1)                12 payload length (u32 BE, after compression)
 *   5  codec id   6 cipher id   7 flags   16 body
 *
 * body = payload (+ SHA-256 of the plaintext when flag 0x01), or nonce | sealed payload | tag when
 * encrypted, with header + associated data (chunk id, or the object's key) authenticated.
 */
export const ENVELOPE_VERSION = 1;
export const ENVELOPE_HEADER_LENGTH = 16;
const FLAG_PLAINTEXT_DIGEST = 0x01;
const DIGEST_LENGTH = 32;

export type ObjectKind = 'chunk' | 'index' | 'manifest';

const MAGIC: Record<ObjectKind, string> = { chunk: 'HVCK', index: 'HVIX', manifest: 'HVMF' };

export interface SealOptions {
  kind: ObjectKind;
  plaintext: Buffer;
  codec: CodecName;
  level?: number;
  /** Encrypts when given. */
  cipher?: { cipher: ChunkCipher; key: Buffer };
  /** Bound into the tag: the chunk id, or the object key of an index / manifest. */
  associatedData: Buffer;
  /** Stores a SHA-256 of the plaintext (objects not already named by their digest). */
  digest: boolean;
  /**
   * Writes the object at the start of this buffer when it fits and returns a view of it, instead
   * of a new allocation (ingest reuses a few buffers; the caller must not reuse `into` while the
   * returned object is still needed).
   */
  into?: Buffer;
}

/** A well-formed object failed to decode; `reason` is for humans, the caller adds the names. */
export class EnvelopeError extends Error {
  override readonly name = 'EnvelopeError';
}

const SAMPLE_THRESHOLD = 256 * 1024;
const SAMPLE_LENGTH = 32 * 1024;

/**
 * Media, archives and encrypted files do not compress: two 32 KiB probes (start and middle)
 * decide, so such blocks skip a full compression pass and its buffers. A wrong guess only costs
 * compression ratio, never correctness.
 */
async function looksIncompressible(
  codec: ChunkCodec,
  plaintext: Buffer,
  level: number | undefined,
): Promise<boolean> {
  if (plaintext.length < SAMPLE_THRESHOLD) return false;
  const middle = Math.floor(plaintext.length / 2);
  for (const start of [0, middle]) {
    const sample = plaintext.subarray(start, start + SAMPLE_LENGTH);
    if (await codec.compressWith(sample, level, (payload) => payload.length < sample.length * 0.97))
      return false;
  }
  return true;
}

/**
 * Whether `plaintext` sits in `object`'s memory right after room for the header, so an
 * unencrypted object of it can be written around it (header in front, no copy of the body).
 */
export function isPlaintextInPlace(object: Buffer, plaintext: Buffer): boolean {
  return (
    plaintext.buffer === object.buffer &&
    plaintext.byteOffset === object.byteOffset + ENVELOPE_HEADER_LENGTH &&
    object.length >= ENVELOPE_HEADER_LENGTH + plaintext.length
  );
}

/** Room a block needs before its data to be sealed in place (DiskBlock.frame). */
export const CHUNK_OBJECT_HEADROOM = ENVELOPE_HEADER_LENGTH;

export async function sealObject(options: SealOptions): Promise<Buffer> {
  const { plaintext } = options;
  const codec = chunkCodec(options.codec);
  if (codec.name === 'none' || (await looksIncompressible(codec, plaintext, options.level))) {
    return writeObject(options, chunkCodec('none'), plaintext);
  }
  // The payload may be lent by the codec (a reused buffer): it is written into the object
  // before compressWith returns.
  return codec.compressWith(plaintext, options.level, (payload) =>
    // Incompressible data is stored as is: never pay the expansion.
    payload.length >= plaintext.length
      ? writeObject(options, chunkCodec('none'), plaintext)
      : writeObject(options, codec, payload),
  );
}

/** Header, then the payload (encrypted, or followed by its digest) in one buffer. */
function writeObject(options: SealOptions, codec: ChunkCodec, payload: Buffer): Buffer {
  const { plaintext } = options;
  const length = objectLength(options, payload.length);
  // One buffer for the whole object: header, then the body written in place (no concatenation).
  const object =
    options.into !== undefined && options.into.length >= length
      ? options.into.subarray(0, length)
      : Buffer.allocUnsafe(length);
  const header = writeHeader(object, options, codec, plaintext.length, payload.length);
  if (options.cipher !== undefined) {
    options.cipher.cipher.sealInto(
      options.cipher.key,
      payload,
      Buffer.concat([header, options.associatedData]),
      object,
      ENVELOPE_HEADER_LENGTH,
    );
    return object;
  }
  // Already there when the object was made around the plaintext (isPlaintextInPlace).
  if (!isPlaintextInPlace(object, payload)) payload.copy(object, ENVELOPE_HEADER_LENGTH);
  if (withPlaintextDigest(options)) {
    createHash('sha256')
      .update(plaintext)
      .digest()
      .copy(object, ENVELOPE_HEADER_LENGTH + payload.length);
  }
  return object;
}

type ObjectOptions = Pick<SealOptions, 'kind' | 'cipher' | 'associatedData' | 'digest'>;

function withPlaintextDigest(options: ObjectOptions): boolean {
  return options.digest && options.cipher === undefined;
}

function objectLength(options: ObjectOptions, payloadLength: number): number {
  const trailer =
    options.cipher !== undefined
      ? options.cipher.cipher.overhead
      : withPlaintextDigest(options)
        ? DIGEST_LENGTH
        : 0;
  return ENVELOPE_HEADER_LENGTH + payloadLength + trailer;
}

function writeHeader(
  object: Buffer,
  options: ObjectOptions,
  codec: ChunkCodec,
  plaintextLength: number,
  payloadLength: number,
): Buffer {
  const header = object.subarray(0, ENVELOPE_HEADER_LENGTH);
  header.write(MAGIC[options.kind], 0, 'latin1');
  header[4] = ENVELOPE_VERSION;
  header[5] = codec.id;
  header[6] = options.cipher?.cipher.id ?? 0;
  header[7] = withPlaintextDigest(options) ? FLAG_PLAINTEXT_DIGEST : 0;
  header.writeUInt32BE(plaintextLength, 8);
  header.writeUInt32BE(payloadLength, 12);
  return header;
}

/**
 * An object stored uncompressed, sealed as it is sent: `pieces` hands its plaintext in order
 * (`plaintextLength` bytes in all), again for each stream opened (a retry). A large disk index (32
 * MiB for a densely allocated 2 TiB disk) is written this way without a buffer of its size
 * (docs/benchmarks/jobs.md, "Dense 2 TiB base").
 */
export function uncompressedObjectBody(
  options: ObjectOptions,
  plaintextLength: number,
  pieces: () => Iterable<Buffer>,
): ReplayableBody {
  const size = objectLength(options, plaintextLength);
  function* sealed(): Generator<Buffer> {
    const header = writeHeader(
      Buffer.alloc(ENVELOPE_HEADER_LENGTH),
      options,
      chunkCodec('none'),
      plaintextLength,
      plaintextLength,
    );
    yield header;
    const plaintext = exactly(plaintextLength, pieces());
    if (options.cipher !== undefined) {
      const { cipher, key } = options.cipher;
      yield* cipher.sealPieces(
        key,
        Buffer.concat([header, options.associatedData]),
        plaintextLength,
        plaintext,
      );
      return;
    }
    const digest = withPlaintextDigest(options) ? createHash('sha256') : undefined;
    for (const piece of plaintext) {
      digest?.update(piece);
      yield piece;
    }
    if (digest !== undefined) yield digest.digest();
  }
  return { size, open: () => Readable.from(sealed(), { objectMode: false }) };
}

/** `pieces` as they come, refused once they hold more or fewer than `length` bytes in all. */
function* exactly(length: number, pieces: Iterable<Buffer>): Generator<Buffer> {
  let held = 0;
  for (const piece of pieces) {
    held += piece.length;
    if (held > length) throw new RangeError(`the pieces hold more than the ${length} bytes announced`);
    yield piece;
  }
  if (held !== length) throw new RangeError(`the pieces hold ${held} bytes, ${length} were announced`);
}

export interface OpenOptions {
  kind: ObjectKind;
  object: Buffer;
  associatedData: Buffer;
  /** Required when the object is encrypted; the cipher comes from the header. */
  key?: Buffer;
  /** Rejects an unencrypted object in an encrypted repository (a planted object). */
  requireEncryption: boolean;
  /**
   * Decrypts into `object` itself (overwritten, also when it does not authenticate): an
   * uncompressed object's plaintext is then a view of it, no copy of its size.
   */
  inPlace?: boolean;
}

export interface OpenedObject {
  plaintext: Buffer;
  codec: CodecName;
  encrypted: boolean;
}

export async function openObject(options: OpenOptions): Promise<OpenedObject> {
  const { object } = options;
  if (object.length < ENVELOPE_HEADER_LENGTH) {
    throw new EnvelopeError(
      `object is ${object.length} bytes, shorter than the ${ENVELOPE_HEADER_LENGTH}-byte header`,
    );
  }
  const magic = object.toString('latin1', 0, 4);
  if (magic !== MAGIC[options.kind]) {
    throw new EnvelopeError(`bad magic "${magic}", expected ${options.kind} magic "${MAGIC[options.kind]}"`);
  }
  if (object[4] !== ENVELOPE_VERSION) {
    throw new EnvelopeError(
      `envelope version ${object[4]} is not supported (this build reads ${ENVELOPE_VERSION})`,
    );
  }
  const codec = chunkCodecById(object.readUInt8(5));
  if (codec === undefined) throw new EnvelopeError(`unknown codec id ${object[5]}`);
  const cipherId = object.readUInt8(6);
  const flags = object.readUInt8(7);
  const plaintextLength = object.readUInt32BE(8);
  const payloadLength = object.readUInt32BE(12);
  const header = object.subarray(0, ENVELOPE_HEADER_LENGTH);
  const body = object.subarray(ENVELOPE_HEADER_LENGTH);
  let payload: Buffer;
  if (cipherId !== 0) {
    const cipher = chunkCipherById(cipherId);
    if (cipher === undefined) throw new EnvelopeError(`unknown cipher id ${cipherId}`);
    if (options.key === undefined)
      throw new EnvelopeError('object is encrypted but the repository has no key');
    if (body.length !== payloadLength + cipher.overhead) {
      throw new EnvelopeError(
        `body is ${body.length} bytes, header announces ${payloadLength + cipher.overhead}`,
      );
    }
    try {
      const associatedData = Buffer.concat([header, options.associatedData]);
      payload =
        options.inPlace === true
          ? cipher.openInPlace(options.key, body, associatedData)
          : cipher.open(options.key, body, associatedData);
    } catch {
      throw new EnvelopeError(
        `${cipher.name} authentication failed (altered bytes or object stored under another name)`,
      );
    }
  } else {
    if (options.requireEncryption)
      throw new EnvelopeError('object is not encrypted in an encrypted repository');
    const digestLength = flags & FLAG_PLAINTEXT_DIGEST ? 32 : 0;
    if (body.length !== payloadLength + digestLength) {
      throw new EnvelopeError(
        `body is ${body.length} bytes, header announces ${payloadLength + digestLength}`,
      );
    }
    payload = body.subarray(0, payloadLength);
  }
  let plaintext: Buffer;
  try {
    plaintext = await codec.decompress(payload, plaintextLength);
  } catch (error) {
    throw new EnvelopeError(`${codec.name} decompression failed: ${(error as Error).message}`);
  }
  if (plaintext.length !== plaintextLength) {
    throw new EnvelopeError(`decoded ${plaintext.length} bytes, header announces ${plaintextLength}`);
  }
  if (cipherId === 0 && flags & FLAG_PLAINTEXT_DIGEST) {
    const expected = body.subarray(payloadLength);
    const actual = createHash('sha256').update(plaintext).digest();
    if (!timingSafeEqual(expected, actual))
      throw new EnvelopeError('SHA-256 of the content does not match the stored digest');
  }
  return { plaintext, codec: codec.name, encrypted: cipherId !== 0 };
}
