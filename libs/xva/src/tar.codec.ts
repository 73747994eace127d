import { XvaFormatError } from './xva-format.error';

export const TAR_BLOCK = 512;

/** One ustar header for a regular file. Names longer than 100 bytes go into the ustar prefix. */
export function encodeTarHeader(name: string, size: number, mtime: Date = new Date(0)): Buffer {
  const header = Buffer.alloc(TAR_BLOCK);
  let prefix = '';
  let base = name;
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', 155);
    if (cut <= 0 || Buffer.byteLength(name.slice(cut + 1)) > 100) {
      throw new XvaFormatError('XVA_OPTION', `tar entry name "${name}" is too long for ustar`);
    }
    prefix = name.slice(0, cut);
    base = name.slice(cut + 1);
  }
  header.write(base, 0, 100, 'utf8');
  header.write('0000644\0', 100, 'latin1');
  header.write('0000000\0', 108, 'latin1');
  header.write('0000000\0', 116, 'latin1');
  header.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  header.write(
    `${Math.floor(mtime.getTime() / 1000)
      .toString(8)
      .padStart(11, '0')}\0`,
    136,
    'latin1',
  );
  header.write('        ', 148, 'latin1');
  header.write('0', 156, 'latin1');
  header.write('ustar\0', 257, 'latin1');
  header.write('00', 263, 'latin1');
  header.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return header;
}

export function tarPadding(size: number): number {
  return (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
}

export interface TarHeader {
  name: string;
  size: number;
  type: string;
}

function readOctal(header: Buffer, start: number, length: number, field: string, offset: number): number {
  const first = header[start] ?? 0;
  if ((first & 0x80) !== 0) {
    // GNU base-256 for sizes beyond 8 GiB.
    let value = first & 0x7f;
    for (let i = 1; i < length; i++) value = value * 256 + (header[start + i] ?? 0);
    if (!Number.isSafeInteger(value)) {
      throw new XvaFormatError('XVA_TAR_HEADER', `tar ${field} is too large`, undefined, offset + start);
    }
    return value;
  }
  const text = header
    .toString('latin1', start, start + length)
    .replace(/[\0 ]+$/, '')
    .trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) {
    throw new XvaFormatError(
      'XVA_TAR_HEADER',
      `tar ${field} "${text}" is not an octal number`,
      undefined,
      offset + start,
    );
  }
  return parseInt(text, 8);
}

/** Decodes a tar header; undefined for an all-zero block (end of archive). */
export function decodeTarHeader(header: Buffer, offset: number): TarHeader | undefined {
  if (header.every((byte) => byte === 0)) return undefined;
  const stored = readOctal(header, 148, 8, 'checksum', offset);
  let unsigned = 0;
  for (let i = 0; i < TAR_BLOCK; i++) unsigned += i >= 148 && i < 156 ? 32 : (header[i] ?? 0);
  if (stored !== unsigned) {
    throw new XvaFormatError(
      'XVA_TAR_CHECKSUM',
      `tar header checksum is ${stored}, computed ${unsigned}: the archive is damaged`,
      undefined,
      offset + 148,
    );
  }
  const rawName = header.toString('utf8', 0, 100).replace(/\0.*$/s, '');
  const magic = header.toString('latin1', 257, 263);
  const prefix = magic === 'ustar\0' ? header.toString('utf8', 345, 500).replace(/\0.*$/s, '') : '';
  return {
    name: prefix === '' ? rawName : `${prefix}/${rawName}`,
    size: readOctal(header, 124, 12, 'size', offset),
    type: String.fromCharCode(header.readUInt8(156)),
  };
}
