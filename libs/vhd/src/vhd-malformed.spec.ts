import {
  VHD_BLOCK_FOOTPRINT,
  VhdFormatError,
  VhdImage,
  bufferSource,
  createVhdStream,
  parseVhdStream,
  vhdChecksum,
  type RangedSource,
  type VhdFormatErrorCode,
} from './index';
import { chunkedStream, collect, patternBlock } from './vhd.fixture';

const MiB = 1024 * 1024;
const HEADER = 512;
const BAT = 1536;

/** A 6 MiB dynamic VHD with blocks 0 and 2 allocated: footer, header, BAT, 2 blocks, footer. */
async function validImage(): Promise<Buffer> {
  return collect(
    createVhdStream({
      virtualSize: 6 * MiB,
      allocatedBlocks: [0, 2],
      type: 'dynamic',
      uuid: '8e4a1c55-0b1f-4d7a-9c3e-2f6b5a4d3c2b',
      readBlock: (index) => Promise.resolve(patternBlock('m', index)),
    }),
  );
}

function resealFooters(file: Buffer): void {
  for (const at of [0, file.length - 512]) {
    const footer = file.subarray(at, at + 512);
    footer.writeUInt32BE(vhdChecksum(footer, 64), 64);
  }
}

function resealHeader(file: Buffer): void {
  const header = file.subarray(HEADER, HEADER + 1024);
  header.writeUInt32BE(vhdChecksum(header, 36), 36);
}

/** Both footers edited the same way, checksums fixed: the damage must be caught by deeper checks. */
function editFooters(file: Buffer, edit: (footer: Buffer) => void): Buffer {
  const copy = Buffer.from(file);
  edit(copy.subarray(0, 512));
  edit(copy.subarray(copy.length - 512));
  resealFooters(copy);
  return copy;
}

function editHeader(file: Buffer, edit: (header: Buffer) => void): Buffer {
  const copy = Buffer.from(file);
  edit(copy.subarray(HEADER, HEADER + 1024));
  resealHeader(copy);
  return copy;
}

async function streamOutcome(file: Buffer): Promise<unknown> {
  try {
    for await (const _ of parseVhdStream(chunkedStream(file, 262_144))) {
      // drain
    }
    return 'ok';
  } catch (error) {
    return error;
  }
}

async function randomAccessOutcome(file: Buffer): Promise<unknown> {
  try {
    const image = await VhdImage.open(bufferSource(file));
    for (const index of image.allocatedBlocks) await image.readBlock(index);
    return 'ok';
  } catch (error) {
    return error;
  }
}

async function expectBoth(file: Buffer, code: VhdFormatErrorCode | VhdFormatErrorCode[]): Promise<void> {
  const codes = Array.isArray(code) ? code : [code];
  for (const outcome of [await streamOutcome(file), await randomAccessOutcome(file)]) {
    expect(outcome).toBeInstanceOf(VhdFormatError);
    expect(codes).toContain((outcome as VhdFormatError).code);
    expect((outcome as VhdFormatError).message.length).toBeGreaterThan(20);
  }
}

describe('malformed VHDs', () => {
  let valid: Buffer;
  beforeAll(async () => {
    valid = await validImage();
  });

  it('accepts the untouched image both ways', async () => {
    expect(await streamOutcome(valid)).toBe('ok');
    expect(await randomAccessOutcome(valid)).toBe('ok');
  });

  it('bad footer cookie', async () => {
    const file = Buffer.from(valid);
    file.write('notavhd!', 0, 'latin1');
    file.write('notavhd!', file.length - 512, 'latin1');
    await expectBoth(file, 'VHD_FOOTER_COOKIE');
    const error = (await streamOutcome(file)) as VhdFormatError;
    expect(error.offset).toBe(0);
  });

  it('bad footer checksum and bad header checksum, with the offset of the field', async () => {
    const file = Buffer.from(valid);
    file[100] = 1;
    file[file.length - 512 + 100] = 1;
    await expectBoth(file, 'VHD_FOOTER_CHECKSUM');
    expect(((await randomAccessOutcome(file)) as VhdFormatError).offset).toBe(file.length - 512 + 64);
    const header = Buffer.from(valid);
    header[HEADER + 600] = 7;
    await expectBoth(header, 'VHD_HEADER_CHECKSUM');
    expect(((await streamOutcome(header)) as VhdFormatError).offset).toBe(HEADER + 36);
  });

  it('bad header cookie', async () => {
    await expectBoth(
      editHeader(valid, (header) => header.write('cxspars!', 0, 'latin1')),
      'VHD_HEADER_COOKIE',
    );
  });

  it('truncated anywhere', async () => {
    for (const length of [0, 100, 512, 1000, 2048, 2560, 2048 + VHD_BLOCK_FOOTPRINT - 1, valid.length - 1]) {
      const outcome = await streamOutcome(valid.subarray(0, length));
      expect(outcome).toBeInstanceOf(VhdFormatError);
      expect(['VHD_TRUNCATED', 'VHD_FOOTER_COOKIE']).toContain((outcome as VhdFormatError).code);
    }
    // Random access sees a shorter file: the footer is not where it should be.
    await expectBoth(valid.subarray(0, valid.length - 1), ['VHD_FOOTER_COOKIE', 'VHD_TRUNCATED']);
  });

  it('BAT entry beyond the end of the file', async () => {
    const file = Buffer.from(valid);
    file.writeUInt32BE(Math.floor(file.length / 512) + 10, BAT + 4 * 2);
    const outcome = (await randomAccessOutcome(file)) as VhdFormatError;
    expect(outcome).toBeInstanceOf(VhdFormatError);
    expect(outcome.code).toBe('VHD_BAT_ENTRY');
    expect(outcome.offset).toBe(BAT + 8);
    expect(await streamOutcome(file)).toMatchObject({ code: 'VHD_TRUNCATED' });
  });

  it('block overlapping the footer, the metadata or another block', async () => {
    const overFooter = Buffer.from(valid);
    overFooter.writeUInt32BE((overFooter.length - 512 - 1024) / 512, BAT + 8);
    expect(await randomAccessOutcome(overFooter)).toMatchObject({ code: 'VHD_BAT_ENTRY' });
    const overHeader = Buffer.from(valid);
    overHeader.writeUInt32BE(2, BAT);
    await expectBoth(overHeader, 'VHD_BLOCK_OVERLAP');
    const overBlock = Buffer.from(valid);
    overBlock.writeUInt32BE(overBlock.readUInt32BE(BAT) + 1, BAT + 8);
    await expectBoth(overBlock, 'VHD_BLOCK_OVERLAP');
  });

  it('absurd sizes: a 1 EiB disk, a BAT larger than the file, a header past the end', async () => {
    await expectBoth(
      editFooters(valid, (footer) => footer.writeBigUInt64BE(2n ** 60n, 48)),
      'VHD_VIRTUAL_SIZE',
    );
    await expectBoth(
      editHeader(valid, (header) => header.writeUInt32BE(0xffffffff, 28)),
      'VHD_MAX_TABLE_ENTRIES',
    );
    // A BAT that starts near the end of the file runs past the footer.
    expect(
      await randomAccessOutcome(
        editHeader(valid, (header) => header.writeBigUInt64BE(BigInt(valid.length - 768), 16)),
      ),
    ).toMatchObject({ code: 'VHD_TABLE_OFFSET' });
    // The largest plausible entry count (a 2 TiB disk) on a small file: garbage entries are refused.
    expect(
      await randomAccessOutcome(editHeader(valid, (header) => header.writeUInt32BE(1 << 20, 28))),
    ).toMatchObject({
      code: 'VHD_BAT_ENTRY',
    });
    expect(
      await randomAccessOutcome(editFooters(valid, (footer) => footer.writeBigUInt64BE(2n ** 40n, 16))),
    ).toMatchObject({ code: 'VHD_FOOTER_DATA_OFFSET' });
  });

  it('block size other than 2 MiB', async () => {
    await expectBoth(
      editHeader(valid, (header) => header.writeUInt32BE(512 * 1024, 32)),
      'VHD_BLOCK_SIZE',
    );
  });

  it('reads stay bounded (the BAT of a 2 TiB disk at most), whatever the header claims', async () => {
    const largest: number[] = [];
    const spy = (file: Buffer): RangedSource => ({
      size: file.length,
      read: (offset, length) => {
        largest.push(length);
        return bufferSource(file).read(offset, length);
      },
    });
    for (const file of [
      editHeader(valid, (header) => header.writeUInt32BE(0xffffffff, 28)),
      editHeader(valid, (header) => header.writeUInt32BE(1 << 20, 28)),
      editFooters(valid, (footer) => footer.writeBigUInt64BE(2n ** 41n, 48)),
      editFooters(valid, (footer) => footer.writeBigUInt64BE(2n ** 62n, 48)),
    ]) {
      await VhdImage.open(spy(file)).catch((error: unknown) => {
        expect(error).toBeInstanceOf(VhdFormatError);
      });
    }
    expect(Math.max(...largest)).toBeLessThanOrEqual(4 * MiB);
  });
});
