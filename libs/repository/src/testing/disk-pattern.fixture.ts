import { createCipheriv, createHash } from 'node:crypto';
import { Remote } from '@haven/remote-sdk';
import { LocalDriver } from '@haven/remote-local';
import type { DiskBlock } from '../restore-point.writer';

export const MiB = 1024 * 1024;
export const BLOCK = 2 * MiB;

/** Deterministic pseudo-random bytes (AES-CTR keystream of a seed): same seed, same disk. */
export function seededBytes(seed: string, length: number): Buffer {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return cipher.update(Buffer.alloc(length));
}

const WORDS = 'the quick brown fox jumps over lazy dogs while kernel logs rotate and packages unpack '.repeat(
  60,
);
const TEXT_POOL = Buffer.from(WORDS);

/** Compressible like logs or source: 64-byte slices of a word pool picked by a seeded stream. */
function textBlock(seed: string, length: number): Buffer {
  const slices = Math.ceil(length / 64);
  const noise = seededBytes(seed, slices * 2);
  const out = Buffer.alloc(slices * 64);
  for (let i = 0; i < slices; i++)
    TEXT_POOL.copy(out, i * 64, noise.readUInt16BE(i * 2) % (TEXT_POOL.length - 64));
  return out.subarray(0, length);
}

export type BlockKind = 'hole' | 'zero' | 'random' | 'repeat' | 'text';

export interface DiskPattern {
  virtualSize: number;
  /** Blocks a source would yield (holes absent, zero blocks present as zeros). */
  blocks: Map<number, Buffer>;
  kinds: BlockKind[];
}

/**
 * A disk with holes, explicit zero blocks, random blocks, repeated blocks and text-like blocks,
 * optionally with a short last block.
 */
export function patternedDisk(seed: string, blockCount: number, tailBytes = 0): DiskPattern {
  const virtualSize = (tailBytes > 0 ? blockCount - 1 : blockCount) * BLOCK + tailBytes;
  const choices = seededBytes(`${seed}/kinds`, blockCount);
  const blocks = new Map<number, Buffer>();
  const kinds: BlockKind[] = [];
  const dataBlocks: Buffer[] = [];
  for (let index = 0; index < blockCount; index++) {
    const length = Math.min(BLOCK, virtualSize - index * BLOCK);
    const order: BlockKind[] = ['hole', 'zero', 'random', 'repeat', 'text', 'random', 'text'];
    let kind = order[(choices[index] ?? 0) % order.length] ?? 'random';
    const earlier = dataBlocks.filter((data) => data.length === length);
    if (kind === 'repeat' && earlier.length === 0) kind = 'random';
    kinds.push(kind);
    switch (kind) {
      case 'hole':
        break;
      case 'zero':
        blocks.set(index, Buffer.alloc(length));
        break;
      case 'random':
        blocks.set(index, seededBytes(`${seed}/${index}`, length));
        dataBlocks.push(blocks.get(index) as Buffer);
        break;
      case 'repeat':
        blocks.set(index, Buffer.from(earlier[(choices[index] ?? 0) % earlier.length]));
        break;
      case 'text':
        blocks.set(index, textBlock(`${seed}/${index}`, length));
        dataBlocks.push(blocks.get(index) as Buffer);
        break;
    }
  }
  return { virtualSize, blocks, kinds };
}

/** A copy of `disk` with `count` blocks rewritten (new random content), chosen by seed. */
export function changedDisk(disk: DiskPattern, seed: string, count: number): DiskPattern {
  const blocks = new Map(disk.blocks);
  const blockCount = Math.ceil(disk.virtualSize / BLOCK);
  const picks = seededBytes(`${seed}/picks`, count * 4);
  for (let i = 0; i < count; i++) {
    const index = picks.readUInt32BE(i * 4) % blockCount;
    blocks.set(index, seededBytes(`${seed}/changed/${i}`, Math.min(BLOCK, disk.virtualSize - index * BLOCK)));
  }
  return { virtualSize: disk.virtualSize, blocks, kinds: disk.kinds };
}

export function rawImage(disk: DiskPattern): Buffer {
  const raw = Buffer.alloc(disk.virtualSize);
  for (const [index, data] of disk.blocks) data.copy(raw, index * BLOCK);
  return raw;
}

/** Blocks in a shuffled-but-deterministic order is not needed: ascending, as XAPI sends them. */
export function* blocksOf(disk: DiskPattern): Generator<DiskBlock> {
  for (const index of [...disk.blocks.keys()].sort((a, b) => a - b)) {
    yield { index, data: Buffer.from(disk.blocks.get(index) as Buffer) };
  }
}

/** The real local remote driver over a folder. */
export function localRemote(path: string, name = 'test-local'): Remote {
  return new Remote(new LocalDriver({ path, fsync: false }), { name });
}

export async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.isBuffer(part) ? part : Buffer.from(part));
  return Buffer.concat(parts);
}

export function isZero(data: Buffer): boolean {
  return data.equals(Buffer.alloc(data.length));
}
