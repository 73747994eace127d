import { createCipheriv, createHash } from 'node:crypto';

/** sha256(seed, ...parts) as a uuid-shaped string: stable object identities for a given seed. */
export function seededUuid(seed: string, ...parts: (string | number)[]): string {
  const hex = createHash('sha256')
    .update([seed, ...parts].join('\0'))
    .digest('hex');
  const variant = ((parseInt(hex.charAt(16), 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** A small deterministic PRNG (mulberry32) for structural choices; content uses AES-CTR below. */
export class SeededRandom {
  private state: number;

  constructor(seed: string, ...parts: (string | number)[]) {
    this.state = createHash('sha256')
      .update([seed, ...parts].join('\0'))
      .digest()
      .readUInt32LE(0);
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  integer(maxExclusive: number): number {
    return Math.floor(this.next() * maxExclusive);
  }
}

/**
 * Deterministic pseudo-random bytes for (seed, stream, position): AES-256-CTR keystream, computed in
 * native code (GB/s), so seeding large disks costs no per-byte JavaScript.
 */
export function seededBytes(seed: string, stream: string, position: number, length: number): Buffer {
  const key = createHash('sha256').update(`${seed}\0${stream}`).digest();
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(position), 0);
  const cipher = createCipheriv('aes-256-ctr', key, iv);
  return cipher.update(Buffer.alloc(length));
}
