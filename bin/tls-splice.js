#!/usr/bin/env node
// The `tls-splice` command: terminate | originate | proxy | relay | agent (see --help).
'use strict';
require('../dist/cli/main.js').runMain(process.argv.slice(2));
