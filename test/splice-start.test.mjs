// start() in two phases: a reversible one (the target is resolved, dialled, connected; stop(), the
// signal and the target's 'close' cancel it; a failure rejects with the target's own code and
// leaves the TLSSocket usable) and an irreversible one. Also: unref() before start() resolves,
// autoClose never closing an fd by a number that was reused, and stats.bytesIn counting `head`.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { spliceTo } from '../dist/index.js';
import { FIXTURES } from './helpers/peers.mjs';
import { runScript } from './helpers/child-script.mjs';
import { PrngStream, sha256 } from './helpers/data.mjs';
import { ourClient, ourServer, drain, pipe, socketPair, userSide, withTimeout } from './helpers/splice-env.mjs';
import { fdCount, assertFdsBack, waitForFdCount } from './helpers/resources.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const read = (file) => fs.readFileSync(file);
const BAD_GATEWAY = 'HTTP/1.1 502 Bad Gateway\r\n\r\n';
const closers = [];
after(async () => { for (const close of closers.reverse()) await close(); });

async function front() {
  const server = await ourServer();
  closers.push(() => server.close());
  return server;
}

// A port nothing listens on (loopback refuses at once).
async function deadPort() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

async function livePort() {
  const server = net.createServer((s) => s.on('error', () => {}));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise((r) => server.close(() => r())));
  return server.address().port;
}

// A plain node:tls client of our server: sends `upload`, collects everything until the end.
function plainClient(port, upload = Buffer.alloc(0)) {
  const socket = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: read(FIXTURES.ca) });
  socket.on('error', () => {});
  const reply = drain(socket);
  socket.once('secureConnect', () => { if (upload.length) socket.write(upload); });
  return { socket, reply };
}

// The TLSSocket is untouched: the peer's bytes are still readable here, and an answer reaches it.
async function assertUsable(tlsSocket, client, upload) {
  const chunks = [];
  tlsSocket.on('data', (d) => chunks.push(d));
  while (Buffer.concat(chunks).length < upload.length) await new Promise((r) => setTimeout(r, 5));
  assert.equal(sha256(Buffer.concat(chunks)), sha256(upload));
  tlsSocket.end(BAD_GATEWAY);
  assert.equal((await withTimeout(client.reply, 10000, 'reply')).toString(), BAD_GATEWAY);
}

const HELLO = Buffer.from('CONNECT backend:80 HTTP/1.1\r\n\r\n');

for (const when of ['before', 'after']) {
  test(`a refused backend socket (refusal ${when} start()) rejects with ECONNREFUSED; ` +
    'the TLSSocket answers 502', { timeout: 30000 }, async () => {
    const srv = await front();
    const port = await deadPort();
    const client = plainClient(srv.port, HELLO);
    const tlsSocket = await srv.nextSocket();
    const backend = net.connect(port, '127.0.0.1');
    const handle = spliceTo(tlsSocket, backend, { autoClose: true });
    if (when === 'before') await new Promise((r) => backend.once('close', r));
    await assert.rejects(withTimeout(handle.start(), 10000, 'start'), { code: 'ECONNREFUSED' });
    const end = await handle.closed;
    assert.equal(end.reason, 'error');
    assert.equal(end.error.code, 'ECONNREFUSED');
    await assertUsable(tlsSocket, client, HELLO);
  });
}

test('a refused { host, port } target rejects with ECONNREFUSED; the TLSSocket answers 502',
  { timeout: 30000 }, async () => {
    const srv = await front();
    const port = await deadPort();
    const client = plainClient(srv.port, HELLO);
    const tlsSocket = await srv.nextSocket();
    const handle = spliceTo(tlsSocket, { host: '127.0.0.1', port }, { engine: 'native' });
    await assert.rejects(withTimeout(handle.start(), 10000, 'start'), { code: 'ECONNREFUSED' });
    await assertUsable(tlsSocket, client, HELLO);
  });

test("the README's proxy example survives a refused backend (a child process)", { timeout: 30000 },
  async () => {
    const port = await deadPort();
    const script = `
      import net from 'node:net';
      import tls from 'node:tls';
      import fs from 'node:fs';
      import { createServer, pipeToNative } from ${JSON.stringify(path.join(here, '..', 'esm', 'index.mjs'))};
      const read = (f) => fs.readFileSync(f);
      const server = createServer({ key: read(${JSON.stringify(FIXTURES.serverKey)}),
        cert: read(${JSON.stringify(FIXTURES.serverCert)}) }, (tlsSocket) => {
        const backend = net.connect(${port}, '127.0.0.1');
        pipeToNative(tlsSocket, backend, { autoClose: true }).catch((err) => {
          console.log('code', err.code);
          tlsSocket.end(${JSON.stringify(BAD_GATEWAY)});
        });
      }).listen(0, '127.0.0.1', () => {
        const client = tls.connect({ port: server.address().port, host: '127.0.0.1',
          servername: 'localhost', ca: read(${JSON.stringify(FIXTURES.ca)}) });
        let got = '';
        client.on('data', (d) => { got += d; });
        client.on('end', () => { console.log('client', JSON.stringify(got)); server.close(); });
      });`;
    const { code, signal, stdout, stderr } = await runScript(script, { timeout: 20000 });
    assert.equal(signal, null, `the child did not exit on its own (killed): ${stdout}${stderr}`);
    assert.equal(code, 0, `child exited with ${code}: ${stderr}`);
    assert.match(stdout, /code ECONNREFUSED/);
    assert.match(stdout, /client "HTTP\/1.1 502 Bad Gateway\\r\\n\\r\\n"/);
  });

test('a target destroyed while connecting: start() rejects with a code, no fd leaks',
  { timeout: 30000 }, async () => {
    const srv = await front();
    const port = await livePort();
    // Warm up: the first splice of a process opens its I/O threads' fds.
    {
      const client = plainClient(srv.port);
      const tlsSocket = await srv.nextSocket();
      const [a, b] = socketPair();
      const h = spliceTo(tlsSocket, a, { autoClose: true });
      await h.start();
      await h.stop({ graceful: false });
      fs.closeSync(b);
      client.socket.destroy();
    }
    await new Promise((r) => setTimeout(r, 100));
    const baseline = fdCount();
    const client = plainClient(srv.port, HELLO);
    const tlsSocket = await srv.nextSocket();
    const target = net.connect(port, '127.0.0.1');
    assert.equal(target.connecting, true);
    const handle = spliceTo(tlsSocket, target, { engine: 'native' });
    const started = handle.start();
    target.destroy();
    await assert.rejects(withTimeout(started, 10000, 'start'), { code: 'ERR_TLS_SPLICE_TARGET_CLOSED' });
    const end = await handle.closed;
    assert.equal(end.error.code, 'ERR_TLS_SPLICE_TARGET_CLOSED');
    await assertUsable(tlsSocket, client, HELLO);
    client.socket.destroy();
    tlsSocket.destroy();
    await assertFdsBack(baseline, 'after a target destroyed while connecting');
  });

for (const how of ['stop()', 'abort signal']) {
  for (const kind of ['socket', 'host-port']) {
    test(`${how} while the ${kind === 'socket' ? 'target socket' : '{ host, port } target'} ` +
      'connects cancels the start; the TLSSocket stays usable', { timeout: 30000 }, async () => {
      const srv = await front();
      const port = await livePort();
      const client = plainClient(srv.port, HELLO);
      const tlsSocket = await srv.nextSocket();
      const baseline = fdCount();
      const target = kind === 'socket' ? net.connect(port, '127.0.0.1') : { host: '127.0.0.1', port };
      const controller = new AbortController();
      const handle = spliceTo(tlsSocket, target, { signal: controller.signal });
      const started = handle.start();
      if (how === 'stop()') void handle.stop(); else controller.abort();
      await assert.rejects(withTimeout(started, 10000, 'start'),
        { code: how === 'stop()' ? 'ERR_TLS_SPLICE_STOPPED' : 'ABORT_ERR' });
      const end = await withTimeout(handle.closed, 10000, 'closed');
      assert.equal(end.reason, how === 'stop()' ? 'stopped' : 'aborted');
      assert.equal(end.engine, null);
      await assertUsable(tlsSocket, client, HELLO);
      if (kind === 'socket') target.destroy();
      const count = await waitForFdCount(baseline);
      assert.ok(count <= baseline, `${count} fds open, baseline ${baseline}`);
    });
  }
}

test('unref() before start() resolves lets the process exit (a child process)', { timeout: 30000 },
  async () => {
    // The TLS peer stays open and silent: only the splice could keep the child alive.
    const sockets = [];
    const server = tls.createServer({ key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert) },
      (s) => { s.on('error', () => {}); sockets.push(s); });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }));
    const script = `
      import fs from 'node:fs';
      import { connect, spliceTo } from ${JSON.stringify(path.join(here, '..', 'esm', 'index.mjs'))};
      import { createRequire } from 'node:module';
      const { binding } = createRequire(import.meta.url)(${JSON.stringify(path.join(here, '..', 'dist', 'binding.js'))});
      const tlsSocket = connect({ port: ${server.address().port}, host: '127.0.0.1',
        servername: 'localhost', ca: fs.readFileSync(${JSON.stringify(FIXTURES.ca)}) });
      tlsSocket.once('secureConnect', async () => {
        const [a] = binding.socketPair();
        const handle = spliceTo(tlsSocket, a, { engine: 'native' });
        const started = handle.start();
        handle.unref();
        await started;
        console.log('started', handle.engine);
      });`;
    const { code, signal, stdout, stderr } = await runScript(script, { timeout: 20000 });
    assert.equal(signal, null, `the child did not exit with an unref()ed splice (killed): ${stdout}`);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /started native/);
  });

for (const engine of ['native', 'js']) {
  test(`autoClose takes the fds at start: a reused fd number is never closed; the pipe reader ` +
    `still sees EOF (${engine})`, { timeout: 60000 }, async () => {
    const toClient = new PrngStream(`reuse/${engine}/down`).next(256 * 1024);
    const toServer = new PrngStream(`reuse/${engine}/up`).next(256 * 1024);
    let resolveGot;
    const gotServer = new Promise((r) => { resolveGot = r; });
    const server = tls.createServer({ key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert),
      allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      drain(s).then(resolveGot, resolveGot);
      s.end(toClient);
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => server.close(() => r())));
    const tlsSocket = await ourClient(server.address().port);
    const [downRead, downWrite] = pipe();
    const [upRead, upWrite] = pipe();
    const handle = spliceTo(tlsSocket, { readFd: upRead, writeFd: downWrite },
      { engine, autoClose: true });
    await handle.start();
    assert.equal(handle.engine, engine);
    if (engine === 'native') {
      // The splice owns them now: the user's numbers are already closed. (The JS engine's own
      // duplicates may take the freed numbers at once, so this is checked natively only.)
      assert.throws(() => fs.fstatSync(downWrite), { code: 'EBADF' });
      assert.throws(() => fs.fstatSync(upRead), { code: 'EBADF' });
    }
    // Someone else opens files: freed numbers are reused.
    const opened = [];
    let reused = -1;
    for (let i = 0; i < 64 && reused < 0; i++) {
      const fd = fs.openSync('/dev/null', 'r');
      if (fd === downWrite) reused = fd; else opened.push(fd);
    }
    if (engine === 'native') assert.equal(reused, downWrite, 'the number was reused');
    // The peer's close reaches the pipe reader as EOF while our direction still runs.
    const down = await withTimeout(drain(fs.createReadStream('', { fd: downRead })), 20000, 'down EOF');
    assert.equal(down.length, toClient.length);
    assert.equal(sha256(down), sha256(toClient));
    const up = fs.createWriteStream('', { fd: upWrite });
    up.end(toServer);
    const [got, end] = await withTimeout(Promise.all([gotServer, handle.closed]), 20000, 'end');
    assert.equal(end.reason, 'end', end.error?.message);
    assert.equal(got.length, toServer.length);
    assert.equal(sha256(got), sha256(toServer));
    await new Promise((r) => setTimeout(r, 50));
    // Nothing the test opened was closed by the splice.
    for (const fd of reused >= 0 ? [reused, ...opened] : opened) {
      assert.ok(fs.fstatSync(fd).isCharacterDevice(), `fd ${fd} is still the file opened on it`);
      fs.closeSync(fd);
    }
  });

  test(`stats.bytesIn counts head (${engine})`, { timeout: 30000 }, async () => {
    const toClient = new PrngStream(`head/${engine}`).next(100000);
    const head = Buffer.from('HTTP/1.1 200 Connection established\r\n\r\n');
    const server = tls.createServer({ key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert),
      allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      s.on('end', () => s.end());
      s.write(toClient);
      s.resume();
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => server.close(() => r())));
    const tlsSocket = await ourClient(server.address().port);
    const [a, b] = socketPair();
    const user = userSide(b);
    const handle = spliceTo(tlsSocket, a, { engine, head, autoClose: true });
    await handle.start();
    await user.waitFor(head.length + toClient.length, 20000);
    assert.equal(sha256(user.received), sha256(head, toClient));
    user.socket.end();
    const end = await withTimeout(handle.closed, 20000, 'closed');
    assert.equal(end.reason, 'end', end.error?.message);
    assert.equal(end.stats.bytesIn, head.length + toClient.length);
  });
}
