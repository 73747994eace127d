import { SimulatorError } from './xapi.failure';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/** `64MiB`, `10G` (binary), `1GB` (decimal) or plain bytes. */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = match === null ? undefined : UNITS[match[2].toLowerCase()];
  if (match === null || unit === undefined) {
    throw new SimulatorError(
      'SIM_BAD_SIZE',
      `size "${text}" is not understood; write e.g. 64MiB, 10G or 1048576`,
    );
  }
  return Math.round(Number(match[1]) * unit);
}
