// A peer that sends its data, close_notify and FIN before the splice runs (issue 10, item 2).
// Node's 'end' on our TLSSocket can come before capture (the user read it), during capture (Node
// ends our side on its own when allowHalfOpen is false) or after it (capture drained the data and
// the end). Every order must splice the direction that remains, deliver every byte of both
// directions (length and SHA-256), and never emit 'error' for the spent socket: each scenario runs
// in a child process with no 'error' listener on the TLSSocket, so such an 'error' is a crash.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers',
  'early-end-child.mjs');

function runScenario(scenario) {
  return new Promise((resolve) => {
    execFile(process.execPath, [child, JSON.stringify(scenario)], { timeout: 30000 },
      (error, stdout, stderr) => resolve({ code: error?.code ?? 0, signal: error?.signal, stdout, stderr }));
  });
}

const cases = [
  { order: 'before', role: 'client', version: 'TLSv1.3' },
  { order: 'during', role: 'client', version: 'TLSv1.3' },
  { order: 'after', role: 'client', version: 'TLSv1.3' },
  { order: 'before', role: 'server', version: 'TLSv1.2' },
  { order: 'during', role: 'server', version: 'TLSv1.2' },
  { order: 'after', role: 'server', version: 'TLSv1.2' },
];

describe("the peer's end before the splice", () => {
  for (const scenario of cases) {
    test(`'end' ${scenario.order} capture, we are the ${scenario.role}, ${scenario.version}`,
      { timeout: 40000 }, async () => {
        const run = await runScenario(scenario);
        assert.equal(run.code, 0, `the process exited with ${run.code} ${run.signal ?? ''}:\n${run.stderr}`);
        assert.doesNotMatch(run.stderr, /Unhandled|uncaught|ERR_TLS_SPLICE_SPENT/i);
        const result = JSON.parse(run.stdout.trim().split('\n').pop());
        assert.equal(result.engine, 'native');
        assert.equal(result.reason, 'end', result.errorCode ?? undefined);
        assert.equal(result.errorCode, null);
        assert.deepEqual(result.errors, [], "our TLSSocket emitted no 'error'");
        assert.equal(result.closeNotifyReceived, true);
        if (scenario.order === 'after') {
          assert.equal(result.before.endEmitted, false, "'end' came after capture");
          assert.equal(result.preambleLength, 0);
        } else {
          assert.equal(result.before.endEmitted, true, "'end' came before capture");
          assert.equal(result.preambleLength, 12_000, 'the user read the whole preamble');
        }
        assert.equal(result.toUsLength, 12_000);
        assert.equal(result.toUsDigest, result.peerDigest);
        assert.equal(result.toPeerLength, 1024 * 1024);
        assert.equal(result.toPeerDigest, result.ourDigest);
      });
  }
});
