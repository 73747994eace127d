import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SelfSignedCertificate {
  /** PEM private key (P-256). */
  key: string;
  /** PEM certificate for `subject` (CN and DNS subject alternative name). */
  cert: string;
  subject: string;
}

/**
 * A throw-away certificate for a TLS NBD server in tests and the simulator, made with the
 * `openssl` command (no npm dependency): what an XCP-ng host's self-signed certificate stands for.
 */
export async function createSelfSignedCertificate(
  subject: string,
  days = 30,
): Promise<SelfSignedCertificate> {
  if (!/^[A-Za-z0-9.-]{1,253}$/.test(subject)) {
    throw new RangeError(`certificate subject "${subject}" must be a host name`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'haven-nbd-cert-'));
  try {
    const keyPath = join(dir, 'key.pem');
    const certPath = join(dir, 'cert.pem');
    try {
      await run('openssl', [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        keyPath,
        '-out',
        certPath,
        '-subj',
        `/CN=${subject}`,
        '-addext',
        `subjectAltName=DNS:${subject}`,
        '-days',
        String(days),
      ]);
    } catch (error) {
      throw new Error(
        `creating a TLS certificate for ${subject} with openssl failed (${error instanceof Error ? error.message : String(error)}); install openssl`,
        { cause: error },
      );
    }
    return { key: await readFile(keyPath, 'utf8'), cert: await readFile(certPath, 'utf8'), subject };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
