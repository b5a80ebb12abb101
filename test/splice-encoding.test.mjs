// A TLSSocket on which setEncoding() was called to read a text preamble is spliced, and the target
// gets the peer's bytes, not text: a real Node tls client sends a UTF-8 line with multibyte
// characters (one split across two records), then, in the same record as the line's end, a little
// text the user unshift()s back and the first two bytes of a three-byte character (held by the
// socket's StringDecoder); once the splice runs, it sends the third byte and 3 MiB of random
// bytes (invalid UTF-8). Under 'auto' (native expected), 'native', 'js', and 'auto' falling back
// to the JS engine (a CBC suite with RSA key exchange), the target must receive exactly the
// bytes after the line (length and sha256) and the client exactly what the target sends.
//
// Text that cannot turn back into the peer's bytes (invalid UTF-8 decoded to U+FFFD) is refused
// with ERR_TLS_SPLICE_ENCODING_LOSSY by every engine, and the TLSSocket stays usable.
// readPreamble() on such a socket returns the peer's bytes as `rest` (it undoes setEncoding()). Other
// encodings (utf16le, latin1, hex, base64, base64url) are checked on a plain Readable against
// random byte strings pushed in random pieces.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import fs from 'node:fs';

import { readPreamble, spliceTo } from '../dist/index.js';
import { encodingHandoverRefusal, revertEncoding } from '../dist/readable-encoding.js';
import { FIXTURES } from './helpers/peers.mjs';
import { PrngStream, sha256 } from './helpers/data.mjs';
import { ourServer, socketPair, userSide, withTimeout } from './helpers/splice-env.mjs';

const servers = [];
after(() => Promise.all(servers.map((s) => s.close())));

const CBC = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA256' };

// A tls-splice server socket and a plain Node tls client connected to it; the server socket has
// setEncoding(encoding) before the client sends anything.
async function pair(serverOptions = {}, clientOptions = {}, encoding = 'utf8') {
  const srv = await ourServer(serverOptions);
  servers.push(srv);
  const client = tls.connect({
    host: '127.0.0.1', port: srv.port, servername: 'localhost', ca: fs.readFileSync(FIXTURES.ca),
    ...clientOptions,
  });
  client.on('error', () => {});
  await withTimeout(new Promise((resolve, reject) => {
    client.once('secureConnect', resolve);
    client.once('error', reject);
  }), 10000, 'handshake');
  const server = await srv.nextSocket();
  server.on('error', () => {});
  server.setEncoding(encoding);
  return { client, server };
}

// One record per write: each write waits for the previous one to reach the kernel.
function writeRecord(socket, bytes) {
  return new Promise((resolve, reject) => socket.write(bytes, (err) => (err ? reject(err) : resolve())));
}

// What a line-protocol user does: read text until a LF, put back what came after it, pause.
function readLine(socket) {
  return withTimeout(new Promise((resolve) => {
    let text = '';
    const onData = (chunk) => {
      assert.equal(typeof chunk, 'string');
      text += chunk;
      const lf = text.indexOf('\n');
      if (lf < 0) return;
      socket.removeListener('data', onData);
      socket.pause();
      const rest = text.slice(lf + 1);
      if (rest !== '') socket.unshift(rest, socket.readableEncoding);
      resolve({ line: text.slice(0, lf), rest });
    };
    socket.on('data', onData);
  }), 10000, 'preamble line');
}

function collect(socket) {
  const chunks = [];
  socket.on('data', (c) => chunks.push(c));
  return new Promise((resolve) => socket.on('end', () => resolve(Buffer.concat(chunks))));
}

const LINE = 'HELLO ünïcödé — 😀 naïve ✓';
const TAIL = 'tail ä ß ';
const EURO = Buffer.from('€');   // e2 82 ac

async function preambleThenSplice({ engine, expectEngine, serverOptions, clientOptions,
  fallbackCode = null }) {
  const { client, server } = await pair(serverOptions, clientOptions);
  const lineBytes = Buffer.from(`${LINE}\n`);
  const split = lineBytes.indexOf(Buffer.from('😀')) + 2;
  // Record 1 ends inside the emoji; record 2 finishes the line, brings TAIL and two of the euro
  // sign's three bytes (the decoder keeps them: the preamble/bulk boundary splits a character).
  await writeRecord(client, lineBytes.subarray(0, split));
  await writeRecord(client, Buffer.concat([lineBytes.subarray(split), Buffer.from(TAIL),
    EURO.subarray(0, 2)]));
  const { line, rest } = await readLine(server);
  assert.equal(line, LINE);
  assert.equal(rest, TAIL, 'record 2 arrived whole: the decoder holds the first euro bytes');

  const [spliceFd, testFd] = socketPair();
  const user = userSide(testFd);
  const handle = spliceTo(server, spliceFd, { engine, autoClose: true });
  await withTimeout(handle.start(), 20000, 'start');
  assert.equal(handle.engine, expectEngine);
  assert.equal(handle.fallbackReason?.code ?? null, fallbackCode);

  const bulk = new PrngStream(`encoding/bulk/${engine}`).next(3 * 1024 * 1024 + 11);
  assert.equal(isUtf8(bulk), false, 'the bulk is not valid UTF-8');
  const toClient = new PrngStream(`encoding/to-client/${engine}`).next(3 * 1024 * 1024 + 5);
  // The client sends the bulk once the splice's first bytes reach it: the splice runs by then,
  // so the bulk is never decoded into text before the handover, whatever the timing.
  const clientGot = collect(client);
  client.once('data', () => {
    client.write(Buffer.concat([EURO.subarray(2), bulk]));
    client.end();
  });
  await user.write(toClient);
  const expected = Buffer.concat([Buffer.from(TAIL), EURO, bulk]);
  await user.waitFor(expected.length, 60000);
  await user.waitForEnd(30000);
  user.socket.end();
  const back = await withTimeout(clientGot, 30000, 'client end');
  assert.equal(user.length, expected.length);
  assert.equal(sha256(user.received), sha256(expected), 'bytes after the line differ');
  assert.equal(back.length, toClient.length);
  assert.equal(sha256(back), sha256(toClient), 'bytes to the client differ');
  const end = await withTimeout(handle.closed, 20000, 'splice end');
  assert.equal(end.error, undefined, end.error?.message);
}

test("engine 'auto' splices a setEncoding('utf8') socket natively, bytes exact both ways",
  { timeout: 120000 }, () => preambleThenSplice({ engine: 'auto', expectEngine: 'native' }));

test("engine 'native': the same, bytes exact both ways",
  { timeout: 120000 }, () => preambleThenSplice({ engine: 'native', expectEngine: 'native' }));

test("engine 'js': the target gets the peer's bytes, not decoded text",
  { timeout: 120000 }, () => preambleThenSplice({ engine: 'js', expectEngine: 'js' }));

test("engine 'auto' falling back to the JS engine (a CBC suite with RSA key exchange) hands over the bytes too",
  { timeout: 120000 }, () => preambleThenSplice({
    engine: 'auto', expectEngine: 'js', serverOptions: CBC, clientOptions: CBC,
    fallbackCode: 'ERR_TLS_SPLICE_UNSUPPORTED_CIPHER',
  }));

for (const engine of ['auto', 'native', 'js']) {
  test(`engine '${engine}': text decoded from invalid UTF-8 is refused with ` +
    'ERR_TLS_SPLICE_ENCODING_LOSSY and the socket stays usable', { timeout: 60000 }, async () => {
    const { client, server } = await pair();
    await writeRecord(client, Buffer.concat([Buffer.from('PING\nnot utf-8: '),
      Buffer.from([0xff, 0xc3, 0x28])]));
    const { line, rest } = await readLine(server);
    assert.equal(line, 'PING');
    assert.ok(rest.includes('\ufffd'));
    const [spliceFd, testFd] = socketPair();
    const user = userSide(testFd);
    const handle = spliceTo(server, spliceFd, { engine, autoClose: true });
    await assert.rejects(withTimeout(handle.start(), 20000, 'start'),
      { code: 'ERR_TLS_SPLICE_ENCODING_LOSSY' });
    // Untouched: the text is still there to read, and the session still carries data both ways.
    assert.equal(server.readableEncoding, 'utf8');
    assert.equal(server.read(), rest);
    const reply = withTimeout(new Promise((resolve) => client.once('data', resolve)), 10000,
      'reply');
    server.write('PONG\n');
    assert.equal(String(await reply), 'PONG\n');
    const more = withTimeout(new Promise((resolve) => server.once('data', resolve)), 10000,
      'more');
    server.resume();
    client.write('é\n');
    assert.equal(await more, 'é\n');
    client.destroy();
    server.destroy();
    user.socket.destroy();
  });
}

test("readPreamble() on a setEncoding('utf8') socket: rest is the peer's bytes, the splice " +
  'after it exact', { timeout: 120000 }, async () => {
  const { client, server } = await pair();
  const pipelined = Buffer.concat([Buffer.from('after ✓ '), Buffer.from([0xff, 0xfe]),
    EURO.subarray(0, 1)]);
  await writeRecord(client, Buffer.concat([Buffer.from(`${LINE}\n`), pipelined]));
  const got = await withTimeout(readPreamble(server), 10000, 'preamble');
  assert.equal(got.line, LINE);
  assert.deepEqual(got.rest, pipelined);
  assert.equal(server.readableEncoding, null);
  const [spliceFd, testFd] = socketPair();
  const user = userSide(testFd);
  const handle = spliceTo(server, spliceFd, { engine: 'native', autoClose: true, head: got.rest });
  await withTimeout(handle.start(), 20000, 'start');
  const more = Buffer.concat([EURO.subarray(1), new PrngStream('encoding/more').next(1024 * 1024)]);
  const toClient = new PrngStream('encoding/preamble-to-client').next(1024 * 1024 + 3);
  const clientGot = collect(client);
  client.end(more);
  await user.write(toClient);
  const expected = Buffer.concat([pipelined, more]);
  await user.waitFor(expected.length, 60000);
  await user.waitForEnd(30000);
  user.socket.end();
  const back = await withTimeout(clientGot, 30000, 'client end');
  assert.equal(user.length, expected.length);
  assert.equal(sha256(user.received), sha256(expected));
  assert.equal(back.length, toClient.length);
  assert.equal(sha256(back), sha256(toClient));
  const end = await withTimeout(handle.closed, 20000, 'splice end');
  assert.equal(end.error, undefined, end.error?.message);
});

// Random byte strings pushed in random pieces through setEncoding(encoding), partly read, then
// handed over: the rest read back as Buffers is exactly the unread bytes.
test('revertEncoding(): exact for utf8 (valid text), utf16le, latin1, hex, base64, base64url',
  { timeout: 30000 }, () => {
    const prng = new PrngStream('encoding/fuzz');
    const sample = Buffer.from('aé€😀\u0100 ✓ ünï'.repeat(4));
    for (const encoding of ['utf8', 'utf16le', 'latin1', 'hex', 'base64', 'base64url']) {
      for (let round = 0; round < 300; round++) {
        const [a, b, c] = prng.next(3);
        const input = encoding === 'utf8' ?
          sample.subarray(0, sample.length - (b % 8)) : prng.next(1 + (a % 60));
        const stream = new Readable({ read() {} });
        stream.setEncoding(encoding);
        let pushed = 0;
        while (pushed < input.length) {
          const n = 1 + (prng.next(1)[0] % 7);
          stream.push(input.subarray(pushed, pushed + n));
          pushed += n;
        }
        // Read a few characters off first, as a user reading a preamble does (whole characters:
        // a hex or base64 digit is part of a byte, and half a byte cannot be handed over).
        const chars = ['hex', 'base64', 'base64url'].includes(encoding) ? 0 : c % 4;
        const taken = (chars > 0 && stream.read(Math.min(chars, stream.readableLength))) || '';
        const takenBytes = Buffer.from(taken, encoding);
        assert.equal(encodingHandoverRefusal(stream), null, `${encoding} round ${round}`);
        revertEncoding(stream);
        assert.equal(stream.readableEncoding, null);
        const restBytes = stream.read() ?? Buffer.alloc(0);
        assert.ok(Buffer.isBuffer(restBytes));
        assert.deepEqual(Buffer.concat([takenBytes, restBytes]), input, `${encoding} round ${round}`);
      }
    }
  });

test("encodingHandoverRefusal(): 'ascii' text and U+FFFD from bad UTF-8 are refused; none when " +
  'no setEncoding()', () => {
  const ascii = new Readable({ read() {} });
  ascii.setEncoding('ascii');
  ascii.push(Buffer.from([0x41, 0xc1]));
  assert.equal(encodingHandoverRefusal(ascii)?.code, 'ERR_TLS_SPLICE_ENCODING_LOSSY');
  const bad = new Readable({ read() {} });
  bad.setEncoding('utf8');
  bad.push(Buffer.from([0x41, 0xff, 0x42]));
  assert.equal(encodingHandoverRefusal(bad)?.code, 'ERR_TLS_SPLICE_ENCODING_LOSSY');
  const plain = new Readable({ read() {} });
  plain.push(Buffer.from([0xff]));
  assert.equal(encodingHandoverRefusal(plain), null);
  revertEncoding(plain);
  assert.deepEqual(plain.read(), Buffer.from([0xff]));
});
