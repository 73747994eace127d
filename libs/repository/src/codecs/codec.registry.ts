import { RepositoryError } from '../repository.errors';
import type { ChunkCodec, CodecName, CompressionSetting } from './chunk-codec';
import { gzipCodec } from './gzip.codec';
import { noneCodec } from './none.codec';
import { zstdCodec } from './zstd.codec';

const CODECS: readonly ChunkCodec[] = [noneCodec, zstdCodec, gzipCodec];

export function chunkCodec(name: CodecName): ChunkCodec {
  switch (name) {
    case 'none':
      return noneCodec;
    case 'zstd':
      return zstdCodec;
    case 'gzip':
      return gzipCodec;
  }
}

export function chunkCodecById(id: number): ChunkCodec | undefined {
  return CODECS.find((codec) => codec.id === id);
}

export function validateCompression(setting: CompressionSetting): CompressionSetting {
  const codec = CODECS.find((candidate) => candidate.name === setting.codec);
  if (codec === undefined) {
    throw new RepositoryError(
      'INVALID_ARGUMENT',
      `compression codec "${setting.codec as string}" is unknown; use none, zstd or gzip`,
    );
  }
  const range = setting.codec === 'zstd' ? [1, 19] : setting.codec === 'gzip' ? [1, 9] : undefined;
  if (setting.level !== undefined && range !== undefined) {
    const [min = 1, max = 1] = range;
    if (!Number.isInteger(setting.level) || setting.level < min || setting.level > max) {
      throw new RepositoryError(
        'INVALID_ARGUMENT',
        `compression level ${setting.level} is out of range for ${setting.codec}; use ${min}..${max}`,
      );
    }
  }
  return setting.level === undefined || range === undefined
    ? { codec: setting.codec }
    : { codec: setting.codec, level: setting.level };
}
