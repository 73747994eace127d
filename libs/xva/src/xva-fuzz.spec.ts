import { Readable } from 'node:stream';
import {
  XVA_CHUNK_SIZE,
  XvaFormatError,
  buildXvaVmRecord,
  createXvaStream,
  readXvaStream,
  type XvaCompression,
} from './index';

const MiB = XVA_CHUNK_SIZE;

function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function archive(compression: XvaCompression): Promise<Buffer> {
  const size = 2 * MiB + 1000;
  const raw = Buffer.alloc(size);
  for (let i = 0; i < size; i += 7) raw[i] = (i * 31) & 0xff;
  const { record, diskIds } = buildXvaVmRecord({
    vm: { name_label: 'fuzz', tags: ['a', 'b'], other_config: { k: 'v' } },
    disks: [{ vdi: { virtual_size: size } }],
  });
  const parts: Buffer[] = [];
  const stream = createXvaStream({
    vm: record,
    disks: [
      {
        id: diskIds[0] ?? '',
        virtualSize: size,
        readChunk: (index) => Promise.resolve(raw.subarray(index * MiB, Math.min(size, (index + 1) * MiB))),
      },
    ],
    compression,
  });
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

async function outcome(file: Buffer): Promise<'ok' | XvaFormatError> {
  try {
    for await (const _ of readXvaStream(Readable.from([file]))) {
      // drain
    }
    return 'ok';
  } catch (error) {
    if (error instanceof XvaFormatError) return error;
    throw error;
  }
}

describe('XVA fuzzing', () => {
  it.each<XvaCompression>(['none', 'zstd', 'gzip'])(
    'a mutated %s archive is read fully or rejected with XvaFormatError',
    async (compression) => {
      const valid = await archive(compression);
      expect(await outcome(valid)).toBe('ok');
      const random = prng(compression.length * 7919);
      const results = { ok: 0, rejected: 0 };
      for (let iteration = 0; iteration < 150; iteration++) {
        const file = Buffer.from(valid);
        let mutated: Buffer = file;
        const kind = Math.floor(random() * 3);
        if (kind === 0) {
          // Bytes flipped, mostly near the start (tar headers, ova.xml, compression headers).
          const count = 1 + Math.floor(random() * 6);
          for (let i = 0; i < count; i++) {
            const at = Math.floor(random() * (random() < 0.7 ? Math.min(4096, file.length) : file.length));
            file[at] = Math.floor(random() * 256);
          }
        } else if (kind === 1) {
          mutated = file.subarray(0, Math.floor(random() * file.length));
        } else {
          const at = Math.floor(random() * file.length);
          mutated = Buffer.concat([
            file.subarray(0, at),
            Buffer.alloc(1 + Math.floor(random() * 700), 0x41),
            file.subarray(at),
          ]);
        }
        const result = await outcome(mutated);
        if (result === 'ok') results.ok++;
        else {
          expect(result.code).toMatch(/^XVA_/);
          results.rejected++;
        }
      }
      expect(results.rejected).toBeGreaterThan(100);
    },
  );
});
