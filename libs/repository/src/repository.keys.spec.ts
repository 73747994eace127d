import { scrypt } from 'node:crypto';
import { REPOSITORY_FORMAT, type RepositoryConfig } from './format/repository.config';
import { createEncryption, keyDerivations, unwrapMasterKey } from './repository.keys';

const FAST_KDF = { N: 1024 };
const IDENTITY = {
  repositoryId: 'repo-keys-spec',
  blockSize: 2 * 1024 * 1024,
  chunkId: 'hmac-sha256' as const,
};

/** A derivation run beside the queue (not through it), to let the thread pool finish its work. */
function scryptBeside(): Promise<void> {
  return new Promise((resolve, reject) =>
    scrypt('beside', 'salt', 32, { N: 1024 }, (error) => (error ? reject(error) : resolve())),
  );
}

function configOf(encryption: Awaited<ReturnType<typeof createEncryption>>['encryption']): RepositoryConfig {
  return {
    format: REPOSITORY_FORMAT,
    version: 1,
    createdAt: new Date(0).toISOString(),
    compression: { codec: 'none' },
    ...IDENTITY,
    encryption,
  };
}

describe('scrypt derivations of a process', () => {
  it('run one at a time: a derivation waits while another holds the queue', async () => {
    let release!: () => void;
    const holder = keyDerivations.run(() => new Promise<void>((resolve) => (release = resolve)));
    let created = false;
    const creating = createEncryption('pass', IDENTITY, 'aes-256-gcm', FAST_KDF).then((result) => {
      created = true;
      return result;
    });
    // Derivations beside the queue finish; the queued one has not started.
    for (let i = 0; i < 5; i++) await scryptBeside();
    expect(created).toBe(false);

    release();
    await holder;
    const { encryption, masterKey } = await creating;
    expect(created).toBe(true);
    expect((await unwrapMasterKey('spec', 'pass', configOf(encryption))).equals(masterKey)).toBe(true);
  });

  it('started together, each still gets its own key, and a wrong secret still fails alone', async () => {
    const created = await Promise.all(
      ['one', 'two', 'three'].map((secret) => createEncryption(secret, IDENTITY, 'aes-256-gcm', FAST_KDF)),
    );
    const opened = await Promise.allSettled([
      ...created.map(({ encryption }, index) =>
        unwrapMasterKey('spec', ['one', 'two', 'three'][index] ?? '', configOf(encryption)),
      ),
      unwrapMasterKey('spec', 'wrong', configOf(created[0].encryption)),
    ]);
    expect(opened.slice(0, 3).map((outcome) => outcome.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'fulfilled',
    ]);
    opened.slice(0, 3).forEach((outcome, index) => {
      expect(outcome.status === 'fulfilled' && outcome.value.equals(created[index].masterKey)).toBe(true);
    });
    expect(opened[3]).toMatchObject({ status: 'rejected', reason: { code: 'WRONG_KEY' } });
    expect(keyDerivations.pending).toBe(0);
  });
});
