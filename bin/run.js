#!/usr/bin/env node
// Runs a TypeScript entry point of the monorepo directly (swc, with decorator metadata and the
// @haven/* path aliases of tsconfig.base.json), so `npm run demo` needs no build step.
'use strict';
const path = require('node:path');
process.env.SWC_NODE_PROJECT ??= path.join(__dirname, '..', 'tsconfig.json');
require('@swc-node/register');
// Computed requires (plugins named in HAVEN_PLUGINS) resolve @haven/* aliases too.
const { compilerOptions } = require('../tsconfig.base.json');
require('tsconfig-paths').register({ baseUrl: path.join(__dirname, '..'), paths: compilerOptions.paths });
const entry = process.argv[2];
if (!entry) {
  console.error('usage: bin/run.js <entry.ts> [args...]');
  process.exit(2);
}
process.argv.splice(1, 1);
require(path.resolve(entry));
