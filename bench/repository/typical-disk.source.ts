import { createCipheriv, createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { DiskBlock } from '@haven/repository';

export const MiB = 1024 * 1024;
export const BLOCK = 2 * MiB;

const POOL = Buffer.from(
  'Nov 26 07:00:01 host systemd[1]: Started Session 42 of user root. kernel: eth0 link up 1000Mbps\n' +
    'INSERT INTO events (id, at, kind) VALUES (1042, now(), "backup"); -- application log line\n'.repeat(40),
);

const ZEROS = Buffer.alloc(BLOCK);

function keystream(seed: string, length: number): Buffer {
  const key = createHash('sha256').update(seed).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(ZEROS.subarray(0, length));
}

/** The keystream of `seed` written into `target` in 64 KiB pieces (no 2 MiB temporary). */
function keystreamInto(seed: string, target: Buffer): void {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  for (let at = 0; at < target.length; at += 65536) {
    cipher.update(ZEROS.subarray(0, Math.min(65536, target.length - at))).copy(target, at);
  }
}

/**
 * "Typical VM data" for the figures: per 2 MiB block, 25% zero (free space), 45% text-like
 * (logs, configs, binaries compress ~3-5x), 30% random (compressed media, encrypted files).
 */
export function typicalBlock(seed: string, index: number): Buffer {
  return typicalBlockInto(seed, index, Buffer.allocUnsafe(BLOCK));
}

/** typicalBlock written into `out` (2 MiB, e.g. a reused buffer); returns `out`. */
export function typicalBlockInto(seed: string, index: number, out: Buffer): Buffer {
  const pick = createHash('sha256').update(`${seed}/${index}`).digest()[0] % 20;
  if (pick < 5) return out.fill(0);
  if (pick < 14) {
    const noise = keystream(`${seed}/${index}`, (BLOCK / 64) * 2);
    for (let i = 0; i < BLOCK / 64; i++)
      POOL.copy(
        out,
        i * 64,
        noise.readUInt16BE(i * 2) % (POOL.length - 64),
        (noise.readUInt16BE(i * 2) % (POOL.length - 64)) + 64,
      );
    // One random byte per 64 keeps zstd honest (no run-length shortcuts).
    for (let i = 0; i < BLOCK; i += 64) out[i] = noise[(i / 64) % noise.length]!;
    return out;
  }
  keystreamInto(`${seed}/${index}`, out);
  return out;
}

/** Writes `blocks` typical blocks to a file (the shared input of dd, Haven and restic). */
export async function writeTypicalDisk(
  path: string,
  seed: string,
  blocks: number,
  changedSeed?: string,
  changedFraction = 0,
): Promise<void> {
  const file = await open(path, 'w');
  try {
    for (let index = 0; index < blocks; index++) {
      const changed =
        changedSeed !== undefined &&
        createHash('sha256').update(`${changedSeed}/${index}`).digest().readUInt32BE(0) / 2 ** 32 <
          changedFraction;
      await file.write(
        changed ? keystream(`${changedSeed}/${index}`, BLOCK) : typicalBlock(seed, index),
        0,
        BLOCK,
        index * BLOCK,
      );
    }
  } finally {
    await file.close();
  }
}

/**
 * A disk file as writer blocks. `fresh`: one new 2 MiB buffer per block (the writer owns what it
 * gets, as with today's VHD stream parser); otherwise buffers come back through `release` and
 * are read into again (a source like `dd`, with one buffer per block in flight).
 */
export async function* fileBlocks(path: string, fresh = false): AsyncGenerator<DiskBlock> {
  const file = await open(path, 'r');
  const free: Buffer[] = [];
  try {
    for (let index = 0; ; index++) {
      const data = fresh ? Buffer.allocUnsafe(BLOCK) : (free.pop() ?? Buffer.allocUnsafeSlow(BLOCK));
      const { bytesRead } = await file.read(data, 0, BLOCK, index * BLOCK);
      if (bytesRead === 0) return;
      yield {
        index,
        data: bytesRead === BLOCK ? data : data.subarray(0, bytesRead),
        ...(fresh ? {} : { release: () => free.push(data) }),
      };
    }
  } finally {
    await file.close();
  }
}

export function mbps(bytes: number, ms: number): string {
  return `${(bytes / MiB / (ms / 1000)).toFixed(0)} MiB/s`;
}
