import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HavenConfig } from '@haven/config';

/**
 * The master key from HAVEN_MASTER_KEY, or (embedded installs) from `$HAVEN_DATA/master-key`,
 * created with mode 600 on first start. Distributed installs must set HAVEN_MASTER_KEY on every
 * process: a worker on another machine could not read the file.
 */
export function resolveMasterKey(config: HavenConfig): Buffer {
  if (config.masterKey) return config.masterKey;
  const file = join(config.dataDir, 'master-key');
  try {
    const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'hex');
    if (key.length !== 32) throw new Error(`${file} must hold 64 hex digits`);
    return key;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  mkdirSync(config.dataDir, { recursive: true });
  const key = randomBytes(32);
  writeFileSync(file, `${key.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  return key;
}
