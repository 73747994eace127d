import {
  VhdFormatError,
  VhdImage,
  createVhdStream,
  parseVhdStream,
  sectorBitmapOf,
  vhdChecksum,
  type RangedSource,
} from './index';
import { chunkedStream, collect, patternBlock } from './vhd.fixture';

const MiB = 1024 * 1024;

/** Small deterministic PRNG (mulberry32) so a failing case can be replayed from its iteration. */
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

const EXTREMES = [
  0n,
  1n,
  511n,
  512n,
  0x7fffffffn,
  0xffffffffn,
  2n ** 40n,
  2n ** 60n,
  2n ** 63n,
  2n ** 64n - 1n,
];
/** [offset, width] of the numeric fields of the footer (relative to a footer) and header (relative to 512). */
const FOOTER_FIELDS: [number, number][] = [
  [8, 4],
  [12, 4],
  [16, 8],
  [40, 8],
  [48, 8],
  [60, 4],
];
const HEADER_FIELDS: [number, number][] = [
  [8, 8],
  [16, 8],
  [24, 4],
  [28, 4],
  [32, 4],
  [576 + 4, 4],
  [576 + 8, 4],
  [576 + 16, 8],
];

function writeField(buffer: Buffer, at: number, width: number, value: bigint): void {
  if (width === 8) buffer.writeBigUInt64BE(value & (2n ** 64n - 1n), at);
  else buffer.writeUInt32BE(Number(value & 0xffffffffn), at);
}

function reseal(file: Buffer): void {
  if (file.length >= 512) file.subarray(0, 512).writeUInt32BE(vhdChecksum(file.subarray(0, 512), 64), 64);
  if (file.length >= 1536)
    file.subarray(512, 1536).writeUInt32BE(vhdChecksum(file.subarray(512, 1536), 36), 36);
  if (file.length >= 2048) {
    const tail = file.subarray(file.length - 512);
    tail.writeUInt32BE(vhdChecksum(tail, 64), 64);
  }
}

type Outcome = { ok: true; blocks: Map<number, Buffer> } | { ok: false; error: unknown };

async function viaStream(file: Buffer): Promise<Outcome> {
  const blocks = new Map<number, Buffer>();
  try {
    for await (const item of parseVhdStream(chunkedStream(file, 200_000))) {
      if (item.type === 'block') blocks.set(item.index, Buffer.concat([item.bitmap, item.data]));
    }
    return { ok: true, blocks };
  } catch (error) {
    return { ok: false, error };
  }
}

let largestRead = 0;
function source(file: Buffer): RangedSource {
  return {
    size: file.length,
    read: (offset, length) => {
      largestRead = Math.max(largestRead, length);
      return Promise.resolve(file.subarray(offset, offset + length));
    },
  };
}

async function viaRandomAccess(file: Buffer, sized = true): Promise<Outcome> {
  const blocks = new Map<number, Buffer>();
  try {
    const image = await VhdImage.open(sized ? source(file) : source(file).read);
    for (const index of image.allocatedBlocks) {
      const block = await image.readBlock(index);
      if (block !== undefined) blocks.set(index, Buffer.concat([block.bitmap, block.data]));
    }
    return { ok: true, blocks };
  } catch (error) {
    return { ok: false, error };
  }
}

function mutate(valid: Buffer, random: () => number): { file: Buffer; how: string } {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const kind = Math.floor(random() * 6);
  let file = Buffer.from(valid);
  switch (kind) {
    case 0: {
      // Random bytes flipped in the metadata, checksums left as they are.
      const count = 1 + Math.floor(random() * 8);
      for (let i = 0; i < count; i++) {
        const at =
          random() < 0.8 ? Math.floor(random() * 2560) : file.length - 1 - Math.floor(random() * 512);
        file[at] = Math.floor(random() * 256);
      }
      return { file, how: `flip ${count} metadata bytes` };
    }
    case 1: {
      // Random bytes flipped in footer/header, then resealed: deeper checks must catch it.
      const count = 1 + Math.floor(random() * 4);
      for (let i = 0; i < count; i++) file[Math.floor(random() * 1536)] = Math.floor(random() * 256);
      file.copy(file, file.length - 512, 0, 512);
      reseal(file);
      return { file, how: `flip ${count} bytes and reseal` };
    }
    case 2: {
      // A numeric field set to an extreme value, checksums fixed.
      const inFooter = random() < 0.5;
      const [offset, width] = pick(inFooter ? FOOTER_FIELDS : HEADER_FIELDS);
      const value = pick(EXTREMES);
      if (inFooter) {
        writeField(file, offset, width, value);
        writeField(file, file.length - 512 + offset, width, value);
      } else {
        writeField(file, 512 + offset, width, value);
      }
      reseal(file);
      return { file, how: `${inFooter ? 'footer' : 'header'} field ${offset} = ${value}` };
    }
    case 3: {
      // BAT entries set to random or extreme sector numbers.
      const entry = Math.floor(random() * 3);
      const value =
        random() < 0.5
          ? Number(pick(EXTREMES) & 0xffffffffn)
          : Math.floor(random() * (file.length / 512 + 8));
      file.writeUInt32BE(value, 1536 + entry * 4);
      return { file, how: `BAT[${entry}] = ${value}` };
    }
    case 4: {
      // Truncated, or extended with junk.
      if (random() < 0.7) {
        const length = Math.floor(random() * file.length);
        return { file: file.subarray(0, length), how: `truncated to ${length}` };
      }
      const junk = Buffer.alloc(1 + Math.floor(random() * 2000), Math.floor(random() * 256));
      file = Buffer.concat([file, junk]);
      return { file, how: `${junk.length} junk bytes appended` };
    }
    default: {
      // Data bytes changed: not detectable by the format (no data checksums), must read back as is.
      const at = 2048 + 512 + Math.floor(random() * (file.length - 2048 - 1024 - 512));
      file[at] = (file[at] ?? 0) ^ 0xff;
      return { file, how: `data byte ${at} flipped` };
    }
  }
}

describe('VHD fuzzing', () => {
  it('every mutated image reads as consistent data or fails with VhdFormatError', async () => {
    const valid = await collect(
      createVhdStream({
        virtualSize: 5 * MiB + 3 * 512,
        allocatedBlocks: [0, 2],
        type: 'differencing',
        parentUuid: '0d9a1c55-0b1f-4d7a-9c3e-2f6b5a4d3c2b',
        parentUnicodeName: 'parent.vhd',
        parentLocators: [{ platform: 'MacX', path: 'file://./parent.vhd' }],
        sectorBitmap: (index) => (index === 2 ? sectorBitmapOf([0, 5, 4095]) : undefined),
        readBlock: (index) =>
          Promise.resolve(patternBlock('fuzz', index).subarray(0, index === 2 ? MiB + 1536 : undefined)),
      }),
    );
    const random = prng(20_240_501);
    const tally = { ok: 0, rejected: 0 };
    for (let iteration = 0; iteration < 400; iteration++) {
      const { file, how } = mutate(valid, random);
      const outcomes = [
        await viaStream(file),
        await viaRandomAccess(file),
        await viaRandomAccess(file, false),
      ];
      for (const outcome of outcomes) {
        if (!outcome.ok && !(outcome.error instanceof VhdFormatError)) {
          throw new Error(
            `iteration ${iteration} (${how}) threw a non-VhdFormatError: ${String(outcome.error)}`,
          );
        }
        if (outcome.ok) tally.ok++;
        else tally.rejected++;
      }
      const [stream, ...others] = outcomes as [Outcome, Outcome, Outcome];
      for (const other of others) {
        if (!stream.ok || !other.ok) continue;
        // Both readers accepted it: they must agree on every block, byte for byte.
        expect([...stream.blocks.keys()]).toEqual([...other.blocks.keys()]);
        for (const [index, data] of stream.blocks) {
          if (!data.equals(other.blocks.get(index)!)) {
            throw new Error(`iteration ${iteration} (${how}): block ${index} differs between readers`);
          }
        }
      }
    }
    // Both kinds of outcome happened, so the mutations really reached the checks.
    expect(tally.ok).toBeGreaterThan(60);
    expect(tally.rejected).toBeGreaterThan(300);
    expect(largestRead).toBeLessThanOrEqual(4 * MiB);
  });
});
