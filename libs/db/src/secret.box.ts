import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

const VERSION = 'v1';
const CHECK_PLAINTEXT = 'haven-master-key-check';

/** The master key does not open what the catalog holds: refuse to start rather than lose secrets. */
export class MasterKeyMismatchError extends Error {
  override readonly name = 'MasterKeyMismatchError';
  readonly code = 'MASTER_KEY_MISMATCH';
  constructor() {
    super(
      'HAVEN_MASTER_KEY does not match the key this catalog was created with; start with the original key ' +
        '(secrets such as pool passwords cannot be read otherwise)',
    );
  }
}

/**
 * Seals secrets (pool passwords, remote credentials, repository keys) with the master key:
 * AES-256-GCM, random 96-bit nonce, the purpose string as associated data so a sealed value cannot
 * be moved to another field.
 */
export class SecretBox {
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error('SecretBox needs a 32-byte master key');
  }

  seal(plaintext: string, purpose: string): string {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce);
    cipher.setAAD(Buffer.from(purpose));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return `${VERSION}:${Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64')}`;
  }

  open(sealed: string, purpose: string): string {
    const separator = sealed.indexOf(':');
    const version = sealed.slice(0, Math.max(separator, 0));
    if (version !== VERSION) throw new Error(`Unknown sealed secret format "${version}"`);
    const raw = Buffer.from(sealed.slice(separator + 1), 'base64');
    const decipher = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, 12));
    decipher.setAAD(Buffer.from(purpose));
    decipher.setAuthTag(raw.subarray(raw.length - 16));
    return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString(
      'utf8',
    );
  }

  /** A value stored once per catalog that only the right master key opens. */
  checkValue(): string {
    return this.seal(CHECK_PLAINTEXT, 'master-key-check');
  }

  matches(checkValue: string): boolean {
    try {
      return this.open(checkValue, 'master-key-check') === CHECK_PLAINTEXT;
    } catch {
      return false;
    }
  }
}
