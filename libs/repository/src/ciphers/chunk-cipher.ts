/** Authenticated encryption of one object: one driver per algorithm, chosen by `chunkCipher(name)`. */
export type CipherName = 'aes-256-gcm' | 'chacha20-poly1305';

export interface ChunkCipher {
  readonly name: CipherName;
  /** The byte stored in every object header (0 = not encrypted). */
  readonly id: number;
  /** Bytes added to the plaintext: nonce + tag. */
  readonly overhead: number;
  /**
   * Returns prefix | nonce | ciphertext | tag, with a fresh random nonce (the prefix, e.g. an
   * object header, saves a copy of the whole object).
   */
  seal(key: Buffer, plaintext: Buffer, associatedData: Buffer, prefix?: Buffer): Buffer;
  /**
   * Writes nonce | ciphertext | tag into `target` at `offset` (no other allocation of the
   * plaintext's size) and returns the bytes written: plaintext length + overhead. Throws a
   * RangeError when the target is too small.
   */
  sealInto(key: Buffer, plaintext: Buffer, associatedData: Buffer, target: Buffer, offset: number): number;
  /**
   * As `seal`, for a plaintext handed in pieces: yields nonce, ciphertext pieces, then the tag, so
   * no buffer of the whole is ever made. The pieces must add up to `plaintextLength` (the caller
   * checks: uncompressedObjectBody).
   */
  sealPieces(
    key: Buffer,
    associatedData: Buffer,
    plaintextLength: number,
    pieces: Iterable<Buffer>,
  ): Generator<Buffer>;
  /** Throws when the tag does not authenticate (wrong key, altered bytes or associated data). */
  open(key: Buffer, sealed: Buffer, associatedData: Buffer): Buffer;
  /**
   * As `open`, decrypting into `sealed` itself: returns the view of it that holds the plaintext (no
   * allocation of the plaintext's size). `sealed` is overwritten, also when it does not authenticate.
   */
  openInPlace(key: Buffer, sealed: Buffer, associatedData: Buffer): Buffer;
}
