#!/usr/bin/env node
// Runs a benchmark from JavaScript compiled ahead of time (swc, same settings as bin/run.js), so a
// memory figure measures Haven and not the on-the-fly TypeScript compiler (~60 MiB of RSS).
//   node bench/repository/precompiled.runner.js bench/repository/memory.bench.ts [args...]
//   node bench/repository/precompiled.runner.js bench/jobs/backup-restore.bench.ts [args...]
'use strict';
const { mkdirSync, readdirSync, readFileSync, writeFileSync, statSync, symlinkSync } = require('node:fs');
const { join, relative, dirname } = require('node:path');

const root = join(__dirname, '..', '..');
// Inside the workspace so node_modules resolves; tmp/ is ignored by git.
const out = join(root, 'tmp', `precompiled-${process.pid}`);
const swcrc = JSON.parse(readFileSync(join(root, '.swcrc'), 'utf8'));
const swc = require('@swc/core');

function compileTree(folder) {
  for (const name of readdirSync(folder)) {
    const path = join(folder, name);
    if (name === 'node_modules') continue;
    if (statSync(path).isDirectory()) compileTree(path);
    else if (
      name.endsWith('.ts') &&
      !/\.(spec|int-spec|e2e-spec)\.ts$/.test(name) &&
      !name.endsWith('.d.ts')
    ) {
      const { code } = swc.transformFileSync(path, {
        ...swcrc,
        swcrc: false,
        sourceMaps: false,
        filename: path,
      });
      const target = join(out, relative(root, path)).replace(/\.ts$/, '.js');
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, code);
    }
  }
}

compileTree(join(root, 'libs'));
compileTree(join(root, 'bench'));
// Helpers started as their own processes from the workspace root (the XAPI simulator test server
// runs `bin/run.js tools/xapi-sim/src/cli.ts`) find them through links: their memory is not measured.
for (const folder of ['bin', 'tools']) symlinkSync(join(root, folder), join(out, folder), 'dir');
const { compilerOptions } = require(join(root, 'tsconfig.base.json'));
const paths = Object.fromEntries(
  Object.entries(compilerOptions.paths).map(([alias, [target]]) => [alias, [target.replace(/\.ts$/, '')]]),
);
// Drop the compiler from memory before the benchmark starts: only the path mapping stays.
delete require.cache[require.resolve('@swc/core')];
require('tsconfig-paths').register({ baseUrl: out, paths });
const entry = process.argv[2];
process.argv.splice(1, 1);
process.on('exit', () => require('node:fs').rmSync(out, { recursive: true, force: true }));
require(join(out, entry.replace(/\.ts$/, '.js')));
