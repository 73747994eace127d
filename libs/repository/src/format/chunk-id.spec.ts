import { execFileSync } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeIntegration } from '@haven/testing';
import {
  type ChunkIdAlgorithm,
  chunkIdAlgorithmFor,
  chunkNamer,
  isChunkIdAlgorithm,
  isKeyedChunkId,
} from './chunk-id';

/** The key of the BLAKE3 reference test vectors. */
const BLAKE3_TEST_KEY = Buffer.from('whats the Elvish word for friend');

describe('chunk ids', () => {
  it('match published test vectors', () => {
    const empty = Buffer.alloc(0);
    expect(chunkNamer('sha256', undefined)(empty).toString('hex')).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
    // RFC 4231, test case 2 (a key shorter than the block)
    expect(
      chunkNamer(
        'hmac-sha256',
        Buffer.from('Jefe'),
      )(Buffer.from('what do ya want for nothing?')).toString('hex'),
    ).toBe('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
    expect(chunkNamer('blake3', undefined)(empty).toString('hex')).toBe(
      'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262',
    );
    expect(chunkNamer('keyed-blake3', BLAKE3_TEST_KEY)(empty).toString('hex')).toBe(
      '92b2b75604ed3c761f9d6f62392c8a9227ad0ea3f09573e783f1498a4ed60d26',
    );
  });

  it('give each block its own id when one keyed namer names many blocks', () => {
    const key = randomBytes(32);
    const name = chunkNamer('keyed-blake3', key);
    const blocks = [randomBytes(2 * 1024 * 1024), randomBytes(4096), randomBytes(2 * 1024 * 1024 - 512)];
    const first = blocks.map((block) => name(block).toString('hex'));
    const again = [...blocks].reverse().map((block) => name(block).toString('hex'));
    expect(again.reverse()).toEqual(first);
    expect(new Set(first).size).toBe(3);
    // The key matters, and each id is 32 bytes.
    expect(chunkNamer('keyed-blake3', randomBytes(32))(blocks[0]).toString('hex')).not.toBe(first[0]);
    expect(first.every((hex) => hex.length === 64)).toBe(true);
    // The SHA-256 pair against node's own primitives.
    expect(chunkNamer('sha256', undefined)(blocks[1])).toEqual(
      createHash('sha256').update(blocks[1]).digest(),
    );
    expect(chunkNamer('hmac-sha256', key)(blocks[1])).toEqual(
      createHmac('sha256', key).update(blocks[1]).digest(),
    );
  });

  it('refuse a key where none is taken and no key where one is needed', () => {
    expect(() => chunkNamer('keyed-blake3', undefined)).toThrow(
      /"keyed-blake3" need the repository's chunk-id key/,
    );
    expect(() => chunkNamer('hmac-sha256', undefined)).toThrow(/"hmac-sha256" need/);
    expect(() => chunkNamer('blake3', randomBytes(32))).toThrow(/"blake3" take no key/);
  });

  it('pick the keyed algorithm of a hash for an encrypted repository, and refuse an unknown hash', () => {
    expect(chunkIdAlgorithmFor('blake3', true)).toBe('keyed-blake3');
    expect(chunkIdAlgorithmFor('blake3', false)).toBe('blake3');
    expect(chunkIdAlgorithmFor('sha256', true)).toBe('hmac-sha256');
    expect(chunkIdAlgorithmFor('sha256', false)).toBe('sha256');
    expect(() => chunkIdAlgorithmFor('md5' as 'sha256', false)).toThrow(
      /chunk id hash "md5" is unknown; use blake3 or sha256/,
    );
    const all: ChunkIdAlgorithm[] = ['sha256', 'hmac-sha256', 'blake3', 'keyed-blake3'];
    expect(all.map(isKeyedChunkId)).toEqual([false, true, false, true]);
    expect(all.every(isChunkIdAlgorithm)).toBe(true);
    expect(['md5', 'BLAKE3', '', 3, undefined, 'toString'].some(isChunkIdAlgorithm)).toBe(false);
  });
});

describeIntegration('chunk ids against the BLAKE3 reference implementation', ['b3sum'], () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'haven-b3sum-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** b3sum of `data`; with `key`, keyed (b3sum reads the key on standard input, the data from a file). */
  const b3sum = (data: Buffer, key?: Buffer): string => {
    const file = join(dir, 'block');
    writeFileSync(file, data);
    const args = key === undefined ? ['--no-names', file] : ['--keyed', '--no-names', file];
    return execFileSync('b3sum', args, { input: key ?? Buffer.alloc(0) })
      .toString()
      .trim();
  };

  it('names whole, short and odd-sized blocks as b3sum does, keyed and not', () => {
    const key = randomBytes(32);
    const unkeyed = chunkNamer('blake3', undefined);
    const keyed = chunkNamer('keyed-blake3', key);
    for (const size of [2 * 1024 * 1024, 1024 * 1024 + 1, 1025, 1]) {
      const block = randomBytes(size);
      expect([size, unkeyed(block).toString('hex')]).toEqual([size, b3sum(block)]);
      expect([size, keyed(block).toString('hex')]).toEqual([size, b3sum(block, key)]);
    }
  });
});
