#!/usr/bin/env node
// The `tls-splice` command: terminate | originate | proxy | relay | agent (see --help;
// --version prints the package's version).
'use strict';
require('../dist/cli/main.js').runMain(process.argv.slice(2));
