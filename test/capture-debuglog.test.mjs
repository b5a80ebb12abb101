// NODE_DEBUG=tls-splice traces capture decisions and never key material (issue 10, "Structure").
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const helpers = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers');

function run(env) {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(helpers, 'debuglog-child.mjs')],
      { timeout: 30000, env: { ...process.env, ...env } },
      (error, stdout, stderr) => resolve({ code: error?.code ?? 0, stdout, stderr }));
  });
}

test('a traced run prints capture lines and refusals with their code, and no secret', { timeout: 40000 }, async () => {
  const { code, stdout, stderr } = await run({ NODE_DEBUG: 'tls-splice' });
  assert.equal(code, 0, stderr);
  const lines = stderr.split('\n').filter((l) => l.startsWith('TLS-SPLICE '));
  const captures = lines.filter((l) => / capture: /.test(l));
  assert.equal(captures.length, 2, stderr);
  assert.match(captures[0], /client TLSv1\.3 TLS_CHACHA20_POLY1305_SHA256, readSeq \d+ writeSeq \d+, .*peerEnded none/);
  assert.match(captures[1], /client TLSv1\.2 TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384/);
  assert.equal(lines.filter((l) => / capture refused: ERR_TLS_SPLICE_ALREADY_CAPTURED /.test(l)).length, 2);
  const { material } = JSON.parse(stdout.trim().split('\n').pop());
  assert.ok(material.length >= 8, 'the child reported its key material');
  const trace = stderr.toLowerCase();
  for (const hex of material) {
    assert.ok(hex.length >= 8);
    assert.equal(trace.includes(hex.toLowerCase()), false, 'key material in the trace');
  }
});

test('without NODE_DEBUG nothing is traced', { timeout: 40000 }, async () => {
  const { code, stderr } = await run({ NODE_DEBUG: '' });
  assert.equal(code, 0, stderr);
  assert.doesNotMatch(stderr, /TLS-SPLICE/);
});
