// Target kinds: a tls.TLSSocket target (its fd is the encrypted wire: never to the native
// engine), { host, port } and { path } targets the splice dials itself, and a target socket whose
// client sent data and FIN before the takeover (Node's allowHalfOpen false must not end it).
// Peers are plain node:tls / node:net on loopback; every transfer checks length and SHA-256 both ways.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { spliceTo } from '../dist/index.js';
import { FIXTURES } from './helpers/peers.mjs';
import { PrngStream, sha256 } from './helpers/data.mjs';
import { ourClient, ourServer, drain, withTimeout } from './helpers/splice-env.mjs';
import { fdCount, assertFdsBack } from './helpers/resources.mjs';

const SIZE = 1024 * 1024;
const read = (file) => fs.readFileSync(file);
const closers = [];
after(async () => { for (const close of closers.reverse()) await close(); });

// Servers stop listening at the end; connections a test left open must not hold the file.
function listen(server, ...args) {
  const sockets = new Set();
  server.on('connection', (s) => { sockets.add(s); s.once('close', () => sockets.delete(s)); });
  closers.push(() => {
    server.close();
    for (const s of sockets) s.destroy();
  });
  return new Promise((resolve) => server.listen(...args, () => resolve(server)));
}

// A plain node:tls backend: collects what arrives until the client's close_notify, then sends
// `reply` and closes its side.
async function tlsBackend(reply) {
  let resolveGot;
  const got = new Promise((resolve) => { resolveGot = resolve; });
  const server = tls.createServer({
    key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert), allowHalfOpen: true,
  }, (socket) => {
    socket.on('error', () => {});
    drain(socket).then((data) => {
      resolveGot(data);
      socket.end(reply);
    }, resolveGot);
  });
  await listen(server, 0, '127.0.0.1');
  return { port: server.address().port, got };
}

// A TCP relay that records every byte going towards the backend, as it appears on the wire.
async function recordingRelay(backendPort) {
  const wire = [];
  const server = net.createServer({ allowHalfOpen: true }, (conn) => {
    const upstream = net.connect(backendPort, '127.0.0.1');
    conn.on('data', (d) => { wire.push(Buffer.from(d)); upstream.write(d); });
    conn.on('end', () => upstream.end());
    upstream.on('data', (d) => conn.write(d));
    upstream.on('end', () => conn.end());
    conn.on('error', () => upstream.destroy());
    upstream.on('error', () => conn.destroy());
  });
  await listen(server, 0, '127.0.0.1');
  return { port: server.address().port, wire: () => Buffer.concat(wire) };
}

// A plain node:tls client of our server: sends `upload` then close_notify, collects the reply.
function plainClient(port, upload) {
  const socket = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: read(FIXTURES.ca),
    allowHalfOpen: true });
  socket.on('error', () => {});
  const reply = drain(socket);
  socket.once('secureConnect', () => socket.end(upload));
  return { socket, reply };
}

const MARKER = Buffer.from('password=hunter2-cleartext-marker');

test("a tls.TLSSocket target goes to the JS engine under 'auto': no cleartext on its raw wire",
  { timeout: 60000 }, async () => {
    const upload = Buffer.concat([MARKER, new PrngStream('tls-target/up').next(SIZE), MARKER]);
    const reply = new PrngStream('tls-target/down').next(SIZE);
    const backend = await tlsBackend(reply);
    const relay = await recordingRelay(backend.port);
    const front = await ourServer();
    closers.push(() => front.close());
    const client = plainClient(front.port, upload);
    const tlsSocket = await front.nextSocket();
    const target = tls.connect({ port: relay.port, host: '127.0.0.1', servername: 'localhost',
      ca: read(FIXTURES.ca), allowHalfOpen: true });
    const handle = spliceTo(tlsSocket, target, { autoClose: true });
    await withTimeout(handle.start(), 10000, 'start');
    assert.equal(handle.engine, 'js');
    assert.equal(handle.fallbackReason?.code, 'ERR_TLS_SPLICE_TARGET_NOT_RAW');
    const [gotBackend, gotClient, end] = await withTimeout(
      Promise.all([backend.got, client.reply, handle.closed]), 30000, 'transfer');
    assert.equal(end.reason, 'end', end.error?.message);
    assert.equal(gotBackend.length, upload.length);
    assert.equal(sha256(gotBackend), sha256(upload));
    assert.equal(gotClient.length, reply.length);
    assert.equal(sha256(gotClient), sha256(reply));
    const wire = relay.wire();
    assert.ok(wire.length > upload.length, 'the relay saw the TLS records');
    assert.equal(wire.indexOf(MARKER), -1, 'cleartext reached the TLS target\'s raw TCP');
  });

test("a tls.TLSSocket target under engine 'native' is refused; the TLSSocket stays usable",
  { timeout: 60000 }, async () => {
    const backend = await tlsBackend(Buffer.alloc(0));
    const relay = await recordingRelay(backend.port);
    const front = await ourServer();
    closers.push(() => front.close());
    const client = plainClient(front.port, MARKER);
    const tlsSocket = await front.nextSocket();
    const target = tls.connect({ port: relay.port, host: '127.0.0.1', servername: 'localhost',
      ca: read(FIXTURES.ca) });
    const handle = spliceTo(tlsSocket, target, { engine: 'native' });
    await assert.rejects(handle.start(), { code: 'ERR_TLS_SPLICE_TARGET_NOT_RAW' });
    const end = await handle.closed;
    assert.equal(end.error?.code, 'ERR_TLS_SPLICE_TARGET_NOT_RAW');
    // Untouched: the peer's bytes are still readable here, and an answer reaches it.
    const gotHere = drain(tlsSocket);
    tlsSocket.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
    assert.equal(sha256(await gotHere), sha256(MARKER));
    assert.equal((await client.reply).toString(), 'HTTP/1.1 502 Bad Gateway\r\n\r\n');
    target.destroy();
    assert.equal(relay.wire().indexOf(MARKER), -1);
  });

// A plain TCP backend: collects until the splice's FIN, then sends `reply` and closes.
async function tcpBackend(reply, listenArgs) {
  let resolveGot;
  const got = new Promise((resolve) => { resolveGot = resolve; });
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    drain(socket).then((data) => {
      resolveGot(data);
      socket.end(reply);
    }, resolveGot);
  });
  await listen(server, ...listenArgs);
  return { server, got };
}

for (const engine of ['native', 'js']) {
  for (const kind of ['host-port', 'path']) {
    test(`a ${kind === 'path' ? '{ path }' : '{ host, port }'} target is dialled, spliced and ` +
      `closed by the splice (${engine})`, { timeout: 60000 }, async () => {
      const sockPath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tls-splice-')), 'backend.sock');
      const front = await ourServer();
      closers.push(() => front.close());
      // Twice: the first splice of a process starts its I/O threads (fds that stay open).
      let baseline = -1;
      for (const round of [1, 2]) {
        const upload = new PrngStream(`dial/${kind}/${engine}/${round}/up`).next(SIZE);
        const reply = new PrngStream(`dial/${kind}/${engine}/${round}/down`).next(SIZE);
        const backend = await tcpBackend(reply,
          kind === 'path' ? [`${sockPath}${round}`] : [0, '127.0.0.1']);
        const target = kind === 'path' ? { path: `${sockPath}${round}` } :
          { host: '127.0.0.1', port: backend.server.address().port };
        if (round === 2) baseline = fdCount();
        const client = plainClient(front.port, upload);
        const tlsSocket = await front.nextSocket();
        const handle = spliceTo(tlsSocket, target, { engine });
        await withTimeout(handle.start(), 10000, 'start');
        assert.equal(handle.engine, engine);
        const [gotBackend, gotClient, end] = await withTimeout(
          Promise.all([backend.got, client.reply, handle.closed]), 30000, 'transfer');
        assert.equal(end.reason, 'end', end.error?.message);
        assert.equal(gotBackend.length, SIZE);
        assert.equal(sha256(gotBackend), sha256(upload));
        assert.equal(gotClient.length, SIZE);
        assert.equal(sha256(gotClient), sha256(reply));
        client.socket.destroy();
      }
      // The dialled socket is the splice's: closed at the end without autoClose.
      await assertFdsBack(baseline, 'after a dialled splice');
    });
  }
}

test('a { host, port } target with a bad port is refused synchronously', () => {
  const fake = new tls.TLSSocket(null);
  assert.throws(() => spliceTo(fake, { host: '127.0.0.1', port: 0 }), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  assert.throws(() => spliceTo(fake, { path: '' }), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  assert.throws(() => spliceTo(fake, 3, { onTruncation: 'rst' }), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  assert.throws(() => spliceTo(fake, 3, { noDelay: 1 }), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
});

for (const engine of ['native', 'js']) {
  test(`a target socket whose client sent data and FIN before the takeover is not ended by Node ` +
    `(allowHalfOpen false, ${engine})`, { timeout: 60000 }, async () => {
    // Small enough for Node to read it all, and the FIN, into the paused socket.
    const request = new PrngStream(`halfopen/${engine}/request`).next(8000);
    const reply = new PrngStream(`halfopen/${engine}/reply`).next(SIZE);
    // The TLS peer: reads the request until close_notify, then answers and closes.
    const peer = await tlsBackend(reply);
    // The TCP side: a server with Node's default allowHalfOpen false, whose client sends the
    // request and FIN at once.
    let accepted;
    const acceptedP = new Promise((resolve) => { accepted = resolve; });
    const tcpServer = net.createServer((socket) => {
      socket.pause();
      accepted(socket);
    });
    await listen(tcpServer, 0, '127.0.0.1');
    const tcpClient = net.connect({ port: tcpServer.address().port, host: '127.0.0.1',
      allowHalfOpen: true });
    tcpClient.on('error', () => {});
    const gotClient = drain(tcpClient);
    tcpClient.end(request);
    const target = await acceptedP;
    assert.equal(target.allowHalfOpen, false);
    // Wait until Node has read the request and the FIN into the paused socket.
    const deadline = Date.now() + 10000;
    while (!(target._readableState.ended && target.readableLength === request.length) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(target._readableState.ended, true, 'the FIN was read before the takeover');
    const tlsSocket = await ourClient(peer.port, { allowHalfOpen: true });
    const handle = spliceTo(tlsSocket, target, { engine, autoClose: true });
    await withTimeout(handle.start(), 10000, 'start');
    const [gotPeer, gotTcp, end] = await withTimeout(
      Promise.all([peer.got, gotClient, handle.closed]), 30000, 'transfer');
    assert.equal(end.reason, 'end', end.error?.message);
    assert.equal(gotPeer.length, request.length);
    assert.equal(sha256(gotPeer), sha256(request));
    assert.equal(gotTcp.length, SIZE);
    assert.equal(sha256(gotTcp), sha256(reply));
  });
}
