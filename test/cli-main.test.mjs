// The command line's own entry points, run as the installed command is (bin/tls-splice.js in a
// child process): --version prints package.json's version and exits 0; `help` is the global
// help and `help COMMAND` is exactly `COMMAND --help`, both exiting 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli } from './helpers/cli.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));

test('--version prints the package version and exits 0', { timeout: 30000 }, async () => {
  const run = await runCli(['--version'], { timeout: 20000 });
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout.trim(), version);
  assert.doesNotMatch(run.stdout, /Usage/);
  assert.equal(run.stderr, '');
});

test('help is the global help; help COMMAND is COMMAND --help', { timeout: 60000 }, async () => {
  const global = await runCli(['help'], { timeout: 20000 });
  assert.equal(global.code, 0, global.stderr);
  const dashed = await runCli(['--help'], { timeout: 20000 });
  assert.equal(global.stdout, dashed.stdout);
  assert.match(global.stdout, /^Usage: tls-splice <command>/);
  assert.match(global.stdout, /--version/);
  for (const name of ['terminate', 'relay']) {
    const viaHelp = await runCli(['help', name], { timeout: 20000 });
    const viaFlag = await runCli([name, '--help'], { timeout: 20000 });
    assert.equal(viaFlag.code, 0, viaFlag.stderr);
    assert.equal(viaHelp.code, 0, viaHelp.stderr);
    assert.equal(viaHelp.stdout, viaFlag.stdout, `help ${name}`);
    assert.match(viaHelp.stdout, new RegExp(`tls-splice ${name}`));
  }
  const unknown = await runCli(['help', 'no-such-command'], { timeout: 20000 });
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "no-such-command"/);
});
