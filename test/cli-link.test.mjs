// The relay <-> agent link protocol (lib/cli/link.ts): each message encodes to one JSON line and
// parses back; untrusted fields that reach a log line are checked, not copied; lines are bounded
// in length (over a real loopback TCP stream).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createRequire } from 'node:module';

import { withTimeout } from './helpers/scenarios.mjs';

const require = createRequire(import.meta.url);
const link = require('../dist/cli/link.js');

test('each message is one JSON line that parses back', () => {
  assert.equal(link.encodeGreeting(), '{"relay":"tls-splice"}\n');
  link.parseGreeting(link.encodeGreeting().trim());
  const announcement = { client: '[::1]:5000', source: { address: '::1', port: 5000 },
    destination: { address: '::1', port: 8080 } };
  const line = link.encodeAnnouncement(announcement);
  assert.equal(line.indexOf('\n'), line.length - 1);
  assert.deepEqual(link.parseAnnouncement(line.trim()), announcement);
  assert.deepEqual(link.parseAnswer(link.encodeAnswer({ ok: true }).trim()), { ok: true });
  assert.deepEqual(link.parseAnswer(link.encodeAnswer({ ok: false, code: 'ECONNREFUSED' }).trim()),
    { ok: false, code: 'ECONNREFUSED' });
});

test('an answer code that is not [A-Z0-9_]{1,64} becomes ERR_TLS_SPLICE_LINK_PROTOCOL', () => {
  for (const code of ['X\nrelay: forged', 'ECONNREFUSED ', 'econnrefused', '', 'A'.repeat(65),
    'ERR_\u0000', 42, null, { toString: 'x' }, ['ECONNREFUSED'], undefined]) {
    assert.deepEqual(link.parseAnswer(JSON.stringify({ ok: false, code })),
      { ok: false, code: 'ERR_TLS_SPLICE_LINK_PROTOCOL' }, JSON.stringify(code));
  }
  assert.deepEqual(link.parseAnswer(JSON.stringify({ ok: false, code: 'A'.repeat(64) })),
    { ok: false, code: 'A'.repeat(64) });
  // Only these two fields count: a message field is never carried to the log.
  assert.deepEqual(link.parseAnswer('{"ok":false,"code":"EHOSTUNREACH","message":"x\\ny"}'),
    { ok: false, code: 'EHOSTUNREACH' });
});

test('lines of the wrong shape are ERR_TLS_SPLICE_LINK_PROTOCOL', () => {
  const refused = (fn, line) => assert.throws(() => fn(line),
    { code: 'ERR_TLS_SPLICE_LINK_PROTOCOL' }, line);
  for (const line of ['', 'not json', '[]', 'null', '"ok"', '{"ok":"true"}', '{"ok":1}', '{}']) {
    refused(link.parseAnswer, line);
  }
  for (const line of ['', '{"relay":"other"}', '{"relay":["tls-splice"]}', 'null']) {
    refused(link.parseGreeting, line);
  }
  for (const line of ['', 'x', '[1]', 'null']) refused(link.parseAnnouncement, line);
});

test('the announced client is named from its source address, never from its "client" field',
  () => {
    const forged = 'a\nrelay: forged';
    assert.deepEqual(link.parseAnnouncement(JSON.stringify({ client: forged })),
      { client: '?', source: undefined, destination: undefined });
    for (const source of [{ address: 'evil\n', port: 1 }, { address: '127.0.0.1', port: 70000 },
      { address: '127.0.0.1', port: '80' }, { address: '127.0.0.1', port: 1.5 }, 'x', null]) {
      assert.equal(link.parseAnnouncement(JSON.stringify({ client: forged, source })).client, '?',
        JSON.stringify(source));
    }
    assert.equal(link.parseAnnouncement(JSON.stringify({ client: forged,
      source: { address: '10.0.0.1', port: 443 } })).client, '10.0.0.1:443');
  });

// A loopback TCP pair: the test writes on one end, the protocol reads the other.
async function pair() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise((r) => server.once('connection', r));
  const writer = net.connect({ host: '127.0.0.1', port: server.address().port });
  const reader = await accepted;
  server.close();
  return { writer, reader };
}

test('a line longer than 4 KiB is refused without waiting for its end; bytes after a line are ' +
  'the stream\'s', { timeout: 20000 }, async () => {
  const { writer, reader } = await pair();
  try {
    writer.write('x'.repeat(link.MAX_LINE_LENGTH + 1));
    await assert.rejects(withTimeout(link.readAnswer(reader), 10000, 'refusal'),
      { code: 'ERR_TLS_SPLICE_PREAMBLE_TOO_LARGE' });
  } finally {
    writer.destroy();
    reader.destroy();
  }
  const second = await pair();
  try {
    second.writer.write('{"ok":true}\nhead bytes');
    const got = await withTimeout(link.readAnswer(second.reader), 10000, 'answer');
    assert.deepEqual(got.message, { ok: true });
    assert.equal(got.rest.toString(), 'head bytes');
  } finally {
    second.writer.destroy();
    second.reader.destroy();
  }
});
