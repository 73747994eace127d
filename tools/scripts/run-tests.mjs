#!/usr/bin/env node
// `npm test`: type-check the monorepo, run every Jest suite (unit, integration, end to end) once,
// and close with one summary line. Under CI=true a skipped test fails the run.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../..', import.meta.url).pathname;
const ci = !['', 'false', '0', undefined].includes(process.env.CI);
const extra = process.argv.slice(2);

if (!extra.includes('--no-typecheck')) {
  const tsc = spawnSync('npx', ['tsc', '-p', 'tsconfig.json', '--noEmit'], { cwd: root, stdio: 'inherit' });
  if (tsc.status !== 0) {
    console.error('Type check failed.');
    process.exit(1);
  }
}
const jestArgs = extra.filter((a) => a !== '--no-typecheck');
const outDir = mkdtempSync(join(tmpdir(), 'haven-jest-'));
const outFile = join(outDir, 'results.json');
// PGlite loads its WebAssembly through a dynamic import, which Jest's VM allows only with this flag.
const jest = spawnSync(
  process.execPath,
  [
    '--experimental-vm-modules',
    '--disable-warning=ExperimentalWarning',
    'node_modules/jest/bin/jest.js',
    '--json',
    `--outputFile=${outFile}`,
    ...(ci ? ['--ci'] : []),
    ...jestArgs,
  ],
  { cwd: root, stdio: 'inherit' },
);
let results;
try {
  results = JSON.parse(readFileSync(outFile, 'utf8'));
} catch {
  console.error(`Jest produced no results (exit ${jest.status}).`);
  process.exit(jest.status || 1);
} finally {
  rmSync(outDir, { recursive: true, force: true });
}
const passed = results.numPassedTests;
const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
const skipped = results.numPendingTests + results.numTodoTests;
console.log(`\nTests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
if (ci && skipped > 0) {
  console.error('CI=true: skipped tests are failures here (a service or tool is missing).');
  process.exit(1);
}
process.exit(failed > 0 || jest.status !== 0 ? 1 : 0);
