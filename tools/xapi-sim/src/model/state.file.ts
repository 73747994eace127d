import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PersistedDisk } from '../storage/disk.registry';
import type { PersistedObject } from './object.store';

export const STATE_FORMAT_VERSION = 1;

export interface PersistedState {
  version: number;
  seed: string;
  generation: number;
  cbtSequence: number;
  objects: PersistedObject[];
  disks: PersistedDisk[];
}

/** The simulator's database: one JSON document, replaced atomically (write + rename). */
export class StateFile {
  readonly path: string;

  constructor(stateDir: string) {
    this.path = join(stateDir, 'state.json');
  }

  async load(): Promise<PersistedState | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    const state = JSON.parse(text) as PersistedState;
    if (state.version !== STATE_FORMAT_VERSION) {
      throw new Error(
        `simulator state ${this.path} has format version ${state.version}, expected ${STATE_FORMAT_VERSION}; use a fresh --state folder`,
      );
    }
    return state;
  }

  async save(state: PersistedState): Promise<void> {
    const temporary = `${this.path}.${process.pid}.tmp`;
    await writeFile(temporary, JSON.stringify(state));
    await rename(temporary, this.path);
  }
}
