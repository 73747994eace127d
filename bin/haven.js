#!/usr/bin/env node
// The `haven` command: the CLI over the gateway's HTTP API.
'use strict';
const path = require('node:path');
process.argv.splice(2, 0, path.join(__dirname, '..', 'apps', 'cli', 'src', 'main.ts'));
require('./run.js');
