// A fresh machine: `npm install && npm test` with Node and nothing else. A test that needs a peer
// program that is missing is skipped with the Debian package to install; under CI=true (.ci/run)
// or TLS_SPLICE_REQUIRE_PEERS=1 the same test fails instead, so CI never skips silently.
//
// Proved for real: a child `node --test` runs cells of the capture matrix with a PATH on which
// gnutls-cli, gnutls-serv, socat and iperf3 do not exist (a directory of symlinks to everything
// else on PATH), once as a user would and once as CI would.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { missingPrograms, pathWithout, peersRequired } from './helpers/programs.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CAPTURE_MATRIX = path.join(here, 'capture.test.mjs');

// What the suite in this tree drives besides Node (peers.mjs, netns.mjs, the TUN tests).
const TEST_PROGRAMS = ['openssl', 'gnutls-cli', 'gnutls-serv', 'socat', 'ss', 'ip', 'unshare', 'ping', 'python3'];
const HIDDEN = ['gnutls-cli', 'gnutls-serv', 'socat', 'iperf3'];

test('every program the tests drive is installed (required under CI=true)', (t) => {
  const missing = missingPrograms(TEST_PROGRAMS);
  const advice = `missing: ${missing.map((m) => m.program).join(', ')}; ` +
    `apt-get install ${[...new Set(missing.map((m) => m.pkg))].join(' ')}`;
  if (missing.length > 0 && !peersRequired()) {
    t.skip(`${advice} (the tests that need them are skipped)`);
    return;
  }
  assert.deepEqual(missing, [], advice);
});

// Runs `node --test` on one test file in a child, with `env` on top of a copy of ours minus what
// would change the outcome (CI, the require flag, and node:test's own child marker).
function runChildTests(file, { env, namePattern }) {
  const childEnv = { ...process.env };
  delete childEnv.CI;
  delete childEnv.TLS_SPLICE_REQUIRE_PEERS;
  delete childEnv.NODE_TEST_CONTEXT;
  Object.assign(childEnv, env);
  const args = ['--test', '--test-reporter=tap', '--test-concurrency=1', '--test-force-exit',
    `--test-name-pattern=${namePattern}`, file];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s) => { out += s; });
    child.stderr.setEncoding('utf8').on('data', (s) => { out += s; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 90000);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const count = (name) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(out)?.[1] ?? NaN);
      // node:test reports the tests the name pattern filtered out as skipped too: count ours apart.
      const skips = out.split('\n').filter((line) => /# SKIP/.test(line) && !/does not match pattern/.test(line));
      resolve({ code, signal, out, pass: count('pass'), fail: count('fail'), skips });
    });
  });
}

describe('a machine without gnutls-bin, socat and iperf3', () => {
  let hidden;
  before(() => {
    hidden = pathWithout(HIDDEN);
  });
  after(() => hidden?.cleanup());

  // The GnuTLS cells of one suite, both roles, plus the OpenSSL cell of the same suite, which
  // must still run and pass (only what is missing is skipped).
  const cells = 'peer, TLSv1\\.3 TLS_AES_128_GCM_SHA256';

  test('the GnuTLS cells are skipped, naming gnutls-bin; the rest still runs', { timeout: 120000 }, async () => {
    const r = await runChildTests(CAPTURE_MATRIX, {
      env: { PATH: hidden.PATH },
      namePattern: `(gnutls|openssl) ${cells}$`,
    });
    assert.equal(r.code, 0, r.out);
    assert.equal(r.fail, 0, r.out);
    assert.equal(r.pass, 2, r.out);
    assert.equal(r.skips.length, 2, r.out);
    for (const line of r.skips) {
      assert.match(line, /gnutls peer/);
      assert.match(line, /gnutls-cli is not installed: apt-get install gnutls-bin/);
    }
  });

  for (const [label, env] of [['CI=true', { CI: 'true' }], ['TLS_SPLICE_REQUIRE_PEERS=1', { TLS_SPLICE_REQUIRE_PEERS: '1' }]]) {
    test(`with ${label} the same cells fail, naming gnutls-bin`, { timeout: 120000 }, async () => {
      const r = await runChildTests(CAPTURE_MATRIX, {
        env: { PATH: hidden.PATH, ...env },
        namePattern: `gnutls ${cells}$`,
      });
      assert.notEqual(r.code, 0, r.out);
      assert.equal(r.fail, 2, r.out);
      assert.equal(r.skips.length, 0, r.out);
      assert.match(r.out, /ERR_TEST_PROGRAM_MISSING/);
      assert.match(r.out, /gnutls-cli is not installed: apt-get install gnutls-bin/);
    });
  }

  test('TLS_SPLICE_REQUIRE_PEERS=0 turns CI=true back into skipping', { timeout: 120000 }, async () => {
    const r = await runChildTests(CAPTURE_MATRIX, {
      env: { PATH: hidden.PATH, CI: 'true', TLS_SPLICE_REQUIRE_PEERS: '0' },
      namePattern: `gnutls ${cells}$`,
    });
    assert.equal(r.code, 0, r.out);
    assert.equal(r.fail, 0, r.out);
    assert.equal(r.skips.length, 2, r.out);
  });
});
