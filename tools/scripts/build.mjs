#!/usr/bin/env node
// Production build: compiles apps/, libs/ and tools/xapi-sim to JavaScript with @swc/core and the
// repository's .swcrc, so services start with `node dist/apps/<role>/src/main.js` and carry no
// on-the-fly TypeScript compiler (~60 MiB of RSS per process).
//   node tools/scripts/build.mjs [--out <dir>]      (default: dist)
// - test files (*.spec.ts, *.int-spec.ts, *.e2e-spec.ts) and *.d.ts are left out;
// - static `@haven/*` imports are rewritten to relative requires (tsconfig.base.json paths);
// - names required at run time (HAVEN_PLUGINS, e.g. the default '@haven/remote-local') resolve
//   through small packages written to <out>/node_modules/@haven/*, pointing at the compiled code;
// - non-TypeScript files under src/ folders (e.g. .mjs workers) are copied as they are.
// The output folder must sit inside the workspace: third-party packages resolve from its
// node_modules.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);
const SOURCE_TREES = ['apps', 'libs', join('tools', 'xapi-sim')];
const TEST_FILE = /\.(spec|int-spec|e2e-spec)\.ts$/;

function parseArgs(argv) {
  let out = join(root, 'dist');
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--out') {
      const value = argv[++i];
      if (value === undefined || value.startsWith('--')) fail('--out needs a folder');
      out = resolve(value);
    } else if (arg.startsWith('--out=')) out = resolve(arg.slice('--out='.length));
    else fail(`unknown argument "${arg}" (usage: build.mjs [--out <dir>])`);
  }
  const inside = relative(root, out);
  if (inside === '' || inside.startsWith('..') || resolve(root, inside) !== out)
    fail(
      `--out must be a folder inside the workspace ${root} (node_modules is resolved from it), got ${out}`,
    );
  for (const tree of SOURCE_TREES)
    if ((out + sep).startsWith(join(root, tree) + sep))
      fail(`--out must not be inside the source tree ${tree}/`);
  return { out };
}

function fail(message) {
  console.error(`build: ${message}`);
  process.exit(2);
}

function* walk(folder) {
  for (const name of readdirSync(folder).sort()) {
    if (name === 'node_modules') continue;
    const path = join(folder, name);
    if (statSync(path).isDirectory()) yield* walk(path);
    else yield path;
  }
}

/** True for a file of a src/ folder (assets next to the code), not project.json or tsconfig.json. */
function isUnderSrc(path) {
  return relative(root, path).split(sep).includes('src');
}

function build({ out }) {
  const started = performance.now();
  const swc = require('@swc/core');
  const swcrc = JSON.parse(readFileSync(join(root, '.swcrc'), 'utf8'));
  const { compilerOptions } = JSON.parse(readFileSync(join(root, 'tsconfig.base.json'), 'utf8'));
  const options = {
    ...swcrc,
    swcrc: false,
    sourceMaps: true,
    jsc: { ...swcrc.jsc, baseUrl: root, paths: compilerOptions.paths },
  };
  rmSync(out, { recursive: true, force: true });
  let compiled = 0;
  let copied = 0;
  for (const tree of SOURCE_TREES) {
    for (const path of walk(join(root, tree))) {
      const target = join(out, relative(root, path));
      if (path.endsWith('.ts')) {
        if (TEST_FILE.test(path) || path.endsWith('.d.ts')) continue;
        const js = target.replace(/\.ts$/, '.js');
        const mapName = `${js.slice(dirname(js).length + 1)}.map`;
        const { code, map } = swc.transformFileSync(path, {
          ...options,
          filename: path,
          sourceFileName: relative(dirname(js), path),
        });
        mkdirSync(dirname(js), { recursive: true });
        writeFileSync(js, `${code}\n//# sourceMappingURL=${mapName}\n`);
        if (map !== undefined) writeFileSync(`${js}.map`, map);
        compiled++;
      } else if (isUnderSrc(path)) {
        mkdirSync(dirname(target), { recursive: true });
        copyFileSync(path, target);
        copied++;
      }
    }
  }
  const aliases = writeAliasPackages(out, compilerOptions.paths);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    `build: ${compiled} files compiled, ${copied} assets copied, ${aliases} @haven/* aliases, into ${relative(root, out)}/ in ${seconds} s`,
  );
}

/** <out>/node_modules/@haven/<name>/index.js re-exporting the compiled entry of each alias. */
function writeAliasPackages(out, paths) {
  let count = 0;
  for (const [alias, [target]] of Object.entries(paths)) {
    if (!alias.startsWith('@haven/') || alias.includes('*')) fail(`unexpected path alias "${alias}"`);
    const folder = join(out, 'node_modules', ...alias.split('/'));
    const entry = join(out, target.replace(/\.ts$/, '.js'));
    mkdirSync(folder, { recursive: true });
    const request = relative(folder, entry).split(sep).join('/');
    writeFileSync(join(folder, 'index.js'), `'use strict';\nmodule.exports = require('${request}');\n`);
    count++;
  }
  return count;
}

build(parseArgs(process.argv.slice(2)));
