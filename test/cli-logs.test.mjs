// The commands' log lines (lib/cli/common.ts Logger) with values a peer chose: in text mode one
// event is one line whatever a field holds (newlines, spaces, quotes, backslashes, control and
// bidi characters), objects are JSON rather than [object Object], and OpenSSL's trailing newlines
// leave no blank line. The end-to-end case (an SNI with a newline through `terminate`) is in
// cli-terminate-limits.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Logger, logValue } = require('../dist/cli/common.js');

function capture(format) {
  const out = new PassThrough();
  let text = '';
  out.setEncoding('utf8');
  out.on('data', (d) => { text += d; });
  return { logger: new Logger(format, out), text: () => text };
}

const HOSTILE = 'evil.example\nterminate: 10.0.0.1:1 -> 10.0.0.2:2 in=0 out=0 end=end';

test('logValue: plain tokens stay as they are; anything else is one JSON-quoted token', () => {
  assert.equal(logValue('127.0.0.1:443'), '127.0.0.1:443');
  assert.equal(logValue('h2'), 'h2');
  assert.equal(logValue(42), '42');
  assert.equal(logValue(true), 'true');
  assert.equal(logValue('two words'), '"two words"');
  assert.equal(logValue(''), '""');
  assert.equal(logValue('a"b'), '"a\\"b"');
  assert.equal(logValue('back\\slash'), '"back\\\\slash"');
  assert.equal(logValue('line\nbreak\r\t'), '"line\\nbreak\\r\\t"');
  assert.equal(logValue('del\x7f'), '"del\\u007f"');
  assert.equal(logValue('bidi\u202eevil'), '"bidi\\u202eevil"');
  assert.equal(logValue('é'), '"\\u00e9"');
  assert.equal(logValue({ a: 1, b: 'x y' }), '"{\\"a\\":1,\\"b\\":\\"x y\\"}"');
  assert.equal(logValue([1, 2]), '[1,2]');
  // Every quoted value parses back to what it was.
  for (const v of [HOSTILE, 'x\u0000y', 'tab\there', '\u2028']) {
    assert.equal(JSON.parse(logValue(v)), v);
  }
});

test('text connection line: network fields cannot add a line or a field', () => {
  const { logger, text } = capture('text');
  logger.connection({
    command: 'terminate', client: '127.0.0.1:5000', backend: '127.0.0.1:80', bytesFromClient: 1,
    bytesToClient: 2, durationMs: 3.4, engine: 'native', reason: 'handshake',
    code: 'ERR_X\nfake=1', sni: HOSTILE, alpn: 'h2 spoof=1', error: 'openssl says no\n\n',
    detail: { nested: 'value' }, worker: undefined,
  });
  const out = text();
  assert.equal(out.split('\n').length, 2, out);   // one line and its newline
  assert.ok(out.endsWith('\n'));
  assert.ok(!out.includes('[object Object]'), out);
  assert.ok(out.startsWith('terminate: 127.0.0.1:5000 -> 127.0.0.1:80 in=1 out=2 ms=3 ' +
    'engine=native end=handshake '), out);
  assert.ok(out.includes(`sni=${JSON.stringify(HOSTILE)}`), out);
  assert.ok(out.includes('alpn="h2 spoof=1"'), out);
  assert.ok(out.includes('code="ERR_X\\nfake=1"'), out);
  assert.ok(out.includes('error="openssl says no"'), out);   // trailing newlines trimmed
  assert.ok(out.includes('detail="{\\"nested\\":\\"value\\"}"'), out);
  assert.ok(!out.includes('worker='), 'undefined fields are left out');
});

test('text info and error lines: one line each, fields escaped, no blank line', () => {
  const { logger, text } = capture('text');
  logger.info('refused connections over --max-connections', {
    code: 'ERR_TLS_SPLICE_TOO_MANY_CONNECTIONS', client: 'a b', extra: { x: 1 } });
  logger.error('agent: the relay sent a bad line', Object.assign(new Error('bad\nline\n'),
    { code: 'EPROTO\n' }));
  logger.error(`no link to the relay ${HOSTILE}`);
  const lines = text().split('\n');
  assert.equal(lines.pop(), '');
  assert.equal(lines.length, 3, text());
  assert.equal(lines[0], 'refused connections over --max-connections ' +
    'code=ERR_TLS_SPLICE_TOO_MANY_CONNECTIONS client="a b" extra="{\\"x\\":1}"');
  assert.equal(lines[1], 'agent: the relay sent a bad line code="EPROTO\\n": bad\\nline');
  assert.ok(lines[2].startsWith('no link to the relay evil.example\\nterminate:'), lines[2]);
});

test('json lines: one JSON object per line, error text without trailing newlines', () => {
  const { logger, text } = capture('json');
  logger.connection({ command: 'proxy', client: '127.0.0.1:1', bytesFromClient: 0,
    bytesToClient: 0, durationMs: 1, engine: null, reason: 'handshake', code: 'X',
    error: 'openssl\n', sni: HOSTILE });
  logger.error('failed', new Error('trailing\n'));
  const lines = text().split('\n');
  assert.equal(lines.pop(), '');
  assert.equal(lines.length, 2, text());
  const [record, error] = lines.map((l) => JSON.parse(l));
  assert.equal(record.sni, HOSTILE);
  assert.equal(record.error, 'openssl');
  assert.equal(error.error, 'trailing');
});
