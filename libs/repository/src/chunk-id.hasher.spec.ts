import { execFile } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ChunkIdHasher } from './chunk-id.hasher';

const SLOT = 2 * 1024 * 1024;

describe('ChunkIdHasher', () => {
  let hasher: ChunkIdHasher;

  beforeEach(() => {
    hasher = new ChunkIdHasher(SLOT, 4);
  });
  afterEach(async () => {
    await hasher.close();
  });

  it.each([0, 1, 4095, SLOT - 512, SLOT])('gives the SHA-256 of a %d-byte block', async (length) => {
    const block = randomBytes(length);
    expect((await hasher.idOf(block)).equals(createHash('sha256').update(block).digest())).toBe(true);
  });

  it('gives the HMAC-SHA256 under the key it is handed (an encrypted repository)', async () => {
    const block = randomBytes(SLOT);
    const key = randomBytes(32);
    expect((await hasher.idOf(block, key)).equals(createHmac('sha256', key).update(block).digest())).toBe(
      true,
    );
  });

  it('answers many more requests than it has slots, each with its own block', async () => {
    const blocks = Array.from({ length: 25 }, (_, n) => Buffer.alloc(SLOT - n, n + 1));
    const ids = await Promise.all(blocks.map((block) => hasher.idOf(block)));
    ids.forEach((id, n) =>
      expect(
        id.equals(
          createHash('sha256')
            .update(blocks[n] ?? '')
            .digest(),
        ),
      ).toBe(true),
    );
  });

  it('refuses a block bigger than its slots, naming both sizes', async () => {
    await expect(hasher.idOf(Buffer.alloc(SLOT + 1))).rejects.toThrow(
      `a ${SLOT + 1}-byte block does not fit the hasher's ${SLOT}-byte slots`,
    );
  });

  it('fails what it has not answered when stopped, and starts a new thread for the next request', async () => {
    const blocks = Array.from({ length: 8 }, () => randomBytes(SLOT));
    const answers = Promise.allSettled(blocks.map((block) => hasher.idOf(block)));
    await hasher.close();
    const outcomes = await answers;
    // The thread may have answered some before it stopped; the others fail, none hangs.
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected')
        expect(String(outcome.reason)).toContain('the chunk hashing thread was stopped');
    }
    const block = randomBytes(100);
    expect((await hasher.idOf(block)).equals(createHash('sha256').update(block).digest())).toBe(true);
  });

  it('keeps a process alive while a request is in flight, and lets it exit once idle', async () => {
    const root = join(__dirname, '..', '..', '..');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [join(root, 'bin/run.js'), join(__dirname, 'testing/hash-and-exit.script.ts')],
      { cwd: root, timeout: 30_000 },
    );
    expect(stdout.trim()).toBe(createHash('sha256').update(Buffer.alloc(1000, 7)).digest('hex'));
  }, 40_000);
});
