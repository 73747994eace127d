import { createHash } from 'node:crypto';
import xxhash from 'xxhash-wasm';
import type { XvaChecksumKind } from './xva.constants';

type Hasher = (data: Uint8Array) => bigint;
let xxh64: Promise<Hasher> | undefined;

/** The WebAssembly module is compiled once per process, on first use. */
function loadXxh64(): Promise<Hasher> {
  xxh64 ??= xxhash().then((api) => (data: Uint8Array) => api.h64Raw(data));
  return xxh64;
}

/** The text of a chunk's checksum entry, as XAPI writes it. */
export async function xvaChunkChecksum(kind: XvaChecksumKind, data: Uint8Array): Promise<string> {
  switch (kind) {
    case 'xxhash': {
      const hash = await loadXxh64();
      // Seed 0, 16 upper-case hex digits (OCaml's "%016LX").
      return hash(data).toString(16).toUpperCase().padStart(16, '0');
    }
    case 'sha1':
      return createHash('sha1').update(data).digest('hex');
  }
}
