// readPreamble(): an HTTP request head or a line read off a real TLS session (a tls-splice server,
// a Node tls client), the bytes the client pipelined behind it returned as `rest`, and a native
// splice with `rest` as `head` delivering exactly the bytes after the preamble (hashed, both
// ways). Limits, truncation, timeouts and malformed heads reject with coded errors.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import fs from 'node:fs';

import { parseHttpRequestHead, readPreamble, spliceTo } from '../dist/index.js';
import { FIXTURES } from './helpers/peers.mjs';
import { PrngStream, sha256 } from './helpers/data.mjs';
import { ourServer, socketPair, userSide, withTimeout } from './helpers/splice-env.mjs';

const servers = [];
after(() => Promise.all(servers.map((s) => s.close())));

async function pair() {
  const srv = await ourServer();
  servers.push(srv);
  const client = tls.connect({
    host: '127.0.0.1', port: srv.port, servername: 'localhost', ca: fs.readFileSync(FIXTURES.ca),
  });
  client.on('error', () => {});
  await new Promise((resolve, reject) => {
    client.once('secureConnect', resolve);
    client.once('error', reject);
  });
  const server = await srv.nextSocket();
  server.on('error', () => {});
  return { client, server };
}

function collect(socket) {
  const chunks = [];
  socket.on('data', (c) => chunks.push(c));
  return new Promise((resolve) => socket.on('end', () => resolve(Buffer.concat(chunks))));
}

// Splices `server` natively with `rest` as head and checks that the target gets exactly `after`
// (the bytes the client sent past the preamble, plus `more` sent later), and the client gets
// what the target sends.
async function spliceAndCheck({ client, server, rest, pipelined, more }) {
  const [spliceFd, testFd] = socketPair();
  const user = userSide(testFd);
  const handle = spliceTo(server, spliceFd, { engine: 'native', autoClose: true, head: rest });
  await handle.start();
  assert.equal(handle.engine, 'native');
  const fromClient = Buffer.concat([pipelined, more]);
  const toClient = new PrngStream('preamble/to-client').next(3 * 1024 * 1024 + 7);
  const clientGot = collect(client);
  client.end(more);
  await user.write(toClient);
  await user.waitFor(fromClient.length, 30000);
  user.socket.end();
  const back = await withTimeout(clientGot, 30000, 'client end');
  assert.equal(user.length, fromClient.length);
  assert.equal(sha256(user.received), sha256(fromClient), 'bytes after the preamble differ');
  assert.equal(back.length, toClient.length);
  assert.equal(sha256(back), sha256(toClient), 'bytes to the client differ');
  const end = await withTimeout(handle.closed, 20000, 'splice end');
  assert.equal(end.error, undefined, end.error?.message);
}

test('CONNECT head with pipelined bytes in the same write: rest is exactly what follows',
  { timeout: 60000 }, async () => {
    const { client, server } = await pair();
    const head = 'CONNECT origin.example:443 HTTP/1.1\r\nHost: origin.example:443\r\n' +
      'Proxy-Authorization: Basic dTpw\r\nX-Twice: a\r\nx-twice: b\r\n\r\n';
    const pipelined = new PrngStream('preamble/pipelined').next(100 * 1024);
    client.write(Buffer.concat([Buffer.from(head, 'latin1'), pipelined]));
    const got = await withTimeout(readPreamble(server, { kind: 'http' }), 10000, 'preamble');
    assert.equal(got.kind, 'http');
    assert.equal(got.method, 'CONNECT');
    assert.equal(got.target, 'origin.example:443');
    assert.equal(got.httpVersion, '1.1');
    assert.equal(got.headers.host, 'origin.example:443');
    assert.equal(got.headers['proxy-authorization'], 'Basic dTpw');
    assert.equal(got.headers['x-twice'], 'a, b');
    assert.deepEqual(got.rawHeaders.slice(0, 2), ['Host', 'origin.example:443']);
    assert.equal(got.preamble.toString('latin1'), head);
    // Part of the pipelined bytes came with the head's record(s); none of the head is in rest.
    assert.ok(got.rest.length > 0 && got.rest.length <= pipelined.length);
    assert.ok(got.rest.equals(pipelined.subarray(0, got.rest.length)));
    const more = new PrngStream('preamble/more').next(2 * 1024 * 1024 + 3);
    await spliceAndCheck({ client, server, rest: got.rest, pipelined, more });
  });

test('a line preamble trickled one byte per write, then data: rest and splice exact',
  { timeout: 60000 }, async () => {
    const { client, server } = await pair();
    client.setNoDelay(true);
    const line = '{"client":"192.0.2.7:51234","é":1}\r\n';
    const reading = readPreamble(server);   // kind 'line' is the default
    const bytes = Buffer.from(line, 'utf8');
    for (const b of bytes.subarray(0, -1)) {
      client.write(Buffer.from([b]));
      await new Promise((r) => setTimeout(r, 2));
    }
    const pipelined = Buffer.concat([Buffer.from('\n\r\n'), new PrngStream('line/p').next(5000)]);
    client.write(Buffer.concat([bytes.subarray(-1), pipelined]));
    const got = await withTimeout(reading, 10000, 'line');
    assert.equal(got.kind, 'line');
    assert.equal(got.line, '{"client":"192.0.2.7:51234","é":1}');
    assert.deepEqual(JSON.parse(got.line), { client: '192.0.2.7:51234', é: 1 });
    assert.ok(got.preamble.equals(bytes));
    assert.ok(got.rest.equals(pipelined.subarray(0, got.rest.length)));
    await spliceAndCheck({ client, server, rest: got.rest, pipelined,
      more: new PrngStream('line/more').next(1024 * 1024) });
  });

test('an HTTP head whose empty line straddles two writes, LF-only lines accepted',
  { timeout: 30000 }, async () => {
    const { client, server } = await pair();
    client.setNoDelay(true);
    const reading = readPreamble(server, { kind: 'http' });
    client.write('\r\nGET http://a.example/x?y HTTP/1.0\nHost: a.example\r\n\r');
    await new Promise((r) => setTimeout(r, 50));
    client.write('\nBODY');
    const got = await withTimeout(reading, 10000, 'head');
    assert.equal(got.method, 'GET');
    assert.equal(got.target, 'http://a.example/x?y');
    assert.equal(got.httpVersion, '1.0');
    assert.equal(got.headers.host, 'a.example');
    assert.equal(got.rest.toString(), 'BODY');
    client.destroy();
  });

test('a head over maxLength is refused with ERR_TLS_SPLICE_PREAMBLE_TOO_LARGE',
  { timeout: 30000 }, async () => {
    const { client, server } = await pair();
    // No terminator at all: refused as soon as more than maxLength bytes are in.
    const reading = readPreamble(server, { kind: 'http', maxLength: 1024 });
    client.write(`GET http://a.example/ HTTP/1.1\r\nX: ${'a'.repeat(4000)}`);
    await assert.rejects(withTimeout(reading, 10000, 'too large'), (err) => {
      assert.equal(err.code, 'ERR_TLS_SPLICE_PREAMBLE_TOO_LARGE');
      assert.ok(err.bytesRead > 1024);
      return true;
    });
    // The socket is still usable: the caller answers over it.
    server.end('HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n');
    const answer = await withTimeout(collect(client), 10000, 'answer');
    assert.match(answer.toString(), /^HTTP\/1\.1 431 /);
  });

test('a line whose LF arrives past maxLength in the same read is refused', { timeout: 30000 },
  async () => {
    const { client, server } = await pair();
    const reading = readPreamble(server, { maxLength: 16 });
    client.write('0123456789abcdefgh\nrest');
    await assert.rejects(withTimeout(reading, 10000, 'too large'),
      { code: 'ERR_TLS_SPLICE_PREAMBLE_TOO_LARGE' });
    client.destroy();
  });

test('the peer ending before the terminator: ERR_TLS_SPLICE_PREAMBLE_TRUNCATED',
  { timeout: 30000 }, async () => {
    const { client, server } = await pair();
    const reading = readPreamble(server, { kind: 'http' });
    const partial = 'CONNECT a.example:443 HTTP/1.1\r\nHost: a';
    client.end(partial);
    await assert.rejects(withTimeout(reading, 10000, 'truncated'), (err) => {
      assert.equal(err.code, 'ERR_TLS_SPLICE_PREAMBLE_TRUNCATED');
      assert.equal(err.bytesRead, partial.length);
      return true;
    });
  });

test('timeout and abort', { timeout: 30000 }, async () => {
  const { client, server } = await pair();
  client.write('partial');
  await assert.rejects(readPreamble(server, { timeout: 100 }),
    { code: 'ERR_TLS_SPLICE_PREAMBLE_TIMEOUT' });
  const ac = new AbortController();
  const reading = readPreamble(server, { signal: ac.signal });
  ac.abort();
  await assert.rejects(reading, { code: 'ABORT_ERR' });
  await assert.rejects(readPreamble(server, { kind: 'sip' }),
    { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  await assert.rejects(readPreamble(server, { maxLength: 0 }),
    { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  client.destroy();
});

test('malformed request heads are ERR_TLS_SPLICE_BAD_PREAMBLE (answer 400)', async () => {
  const bad = [
    'GET / HTTP/1.1\r\nHost : a\r\n\r\n',          // RFC 9112 5.1: space before the colon
    'GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n',    // RFC 9112 5.2: obs-fold
    'GET / HTTP/2.0\r\n\r\n',
    'GET  / HTTP/1.1\r\n\r\n',
    'GET / HTTP/1.1 extra\r\n\r\n',
    'G(T / HTTP/1.1\r\n\r\n',
    'GET / HTTP/1.1\r\nNoColon\r\n\r\n',
    'GET / HTTP/1.1\r\nX: a\rb\r\n\r\n',            // a bare CR in a field value
    'GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n',
    '\r\n\r\n',
  ];
  for (const head of bad) {
    assert.throws(() => parseHttpRequestHead(Buffer.from(head, 'latin1')),
      { code: 'ERR_TLS_SPLICE_BAD_PREAMBLE' }, JSON.stringify(head));
  }
  // Over TLS, a malformed head rejects the read with the same code.
  const { client, server } = await pair();
  const reading = readPreamble(server, { kind: 'http' });
  client.write('CONNECT a.example:443 HTTP/1.1\r\nHost : a\r\n\r\n');
  await assert.rejects(withTimeout(reading, 10000, 'bad head'),
    { code: 'ERR_TLS_SPLICE_BAD_PREAMBLE' });
  client.destroy();
});

test('a preamble, data and the peer\'s close in one write: no \'end\' yet, the reply still goes out',
  { timeout: 30000 }, async () => {
    const { client, server } = await pair();
    const data = new PrngStream('preamble/eof').next(3000);
    const clientGot = collect(client);
    client.end(Buffer.concat([Buffer.from('{"one":"shot"}\n'), data]));
    // Let the close_notify arrive with the data before the read.
    await new Promise((r) => setTimeout(r, 100));
    const got = await withTimeout(readPreamble(server), 10000, 'line');
    assert.equal(got.line, '{"one":"shot"}');
    // Reading the preamble must not emit 'end' (Node would then end our side at once, and the
    // session could no longer be spliced).
    await new Promise((r) => setImmediate(r));
    assert.equal(server.readableEnded, false);
    assert.equal(server.writableEnded, false);
    const [spliceFd, testFd] = socketPair();
    const user = userSide(testFd);
    const handle = spliceTo(server, spliceFd, { engine: 'native', autoClose: true, head: got.rest });
    await handle.start();
    await user.waitForEnd(10000);
    assert.equal(sha256(user.received), sha256(data));
    const reply = new PrngStream('preamble/reply').next(100 * 1024);
    await user.write(reply);
    user.socket.end();
    const back = await withTimeout(clientGot, 10000, 'reply');
    assert.equal(sha256(back), sha256(reply));
    const end = await withTimeout(handle.closed, 10000, 'splice end');
    assert.equal(end.error, undefined, end.error?.message);
    assert.equal(end.peerEofWithoutCloseNotify, false);
  });
