// onTruncation: a peer whose TCP ends without close_notify (an agent killed mid-upload, or an
// attacker) must not look like a complete upload to a plain backend. 'reset': the target socket
// gets an RST (the backend sees ECONNRESET); 'end': a normal FIN. The peer's TCP is cut by a relay
// between a plain node:tls client and our server, after the backend got every byte sent so far.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { spliceTo } from '../dist/index.js';
import { binding } from '../dist/binding.js';
import { FIXTURES } from './helpers/peers.mjs';
import { PrngStream, sha256 } from './helpers/data.mjs';
import { ourServer, withTimeout } from './helpers/splice-env.mjs';

const SIZE = 256 * 1024;
const read = (file) => fs.readFileSync(file);
const closers = [];
after(async () => { for (const close of closers.reverse()) await close(); });

// Servers stop listening at the end; connections a failed test left open must not hold the file.
function listen(server) {
  const sockets = new Set();
  server.on('connection', (s) => { sockets.add(s); s.once('close', () => sockets.delete(s)); });
  closers.push(() => {
    server.close();
    for (const s of sockets) s.destroy();
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

// A plain TCP backend that reports how its connection ended: a clean 'end' or an error code.
async function backend() {
  const state = { chunks: [], length: 0, ended: false, errorCode: null };
  let resolveDone;
  state.done = new Promise((r) => { resolveDone = r; });
  const port = await listen(net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('data', (d) => { state.chunks.push(d); state.length += d.length; });
    socket.on('end', () => { state.ended = true; socket.end(); });
    socket.on('error', (err) => { state.errorCode = err.code; });
    socket.on('close', () => resolveDone());
  }));
  return { port, state };
}

// A backend that reads nothing until resume(): what the splice writes waits in the socket buffers.
async function pausedBackend() {
  const state = { chunks: [], length: 0, ended: false, errorCode: null };
  let resolveDone;
  let conn = null;
  state.done = new Promise((r) => { resolveDone = r; });
  const port = await listen(net.createServer({ allowHalfOpen: true, pauseOnConnect: true },
    (socket) => {
      conn = socket;
      socket.on('end', () => { state.ended = true; socket.end(); });
      socket.on('error', (err) => { state.errorCode = err.code; });
      socket.on('close', () => resolveDone());
    }));
  return {
    port, state,
    resume() {
      conn.on('data', (d) => { state.chunks.push(d); state.length += d.length; });
      conn.resume();
    },
  };
}

// Forwards client <-> server; cut() ends the server side's TCP (a FIN, no close_notify) and drops
// whatever the client still sends.
async function cuttingRelay(serverPort) {
  let upstream = null;
  let conn = null;
  let cut = false;
  const port = await listen(net.createServer((c) => {
    conn = c;
    upstream = net.connect(serverPort, '127.0.0.1');
    conn.on('data', (d) => { if (!cut) upstream.write(d); });
    upstream.on('data', (d) => conn.write(d));
    conn.on('error', () => {});
    upstream.on('error', () => {});
    upstream.on('close', () => conn.destroy());
  }));
  return {
    port,
    cut() { cut = true; upstream.end(); },
    // The next bytes the client sends are passed on only up to `n`, then the TCP ends: the
    // server sees the start of a TLS record and a FIN inside it.
    cutInside(n) {
      conn.removeAllListeners('data');
      conn.on('data', (d) => {
        if (cut) return;
        cut = true;
        upstream.end(d.subarray(0, n));
      });
    },
  };
}

// A TLS client of our server through a relay the test can cut: the relay, the client and our
// server-side TLSSocket.
async function cutConnection() {
  const front = await ourServer();
  closers.push(() => front.close());
  const relay = await cuttingRelay(front.port);
  const client = tls.connect({ port: relay.port, host: '127.0.0.1', servername: 'localhost',
    ca: read(FIXTURES.ca) });
  client.on('error', () => {});
  const tlsSocket = await front.nextSocket();
  return { relay, client, tlsSocket };
}

for (const engine of ['native', 'js']) {
  for (const mode of ['reset', 'end']) {
    test(`a peer EOF without close_notify, onTruncation '${mode}' (${engine})`, { timeout: 60000 },
      async () => {
        const upload = new PrngStream(`truncation/${engine}/${mode}`).next(SIZE);
        const back = await backend();
        const { relay, client, tlsSocket } = await cutConnection();
        const handle = spliceTo(tlsSocket, { host: '127.0.0.1', port: back.port },
          { engine, onTruncation: mode });
        await withTimeout(handle.start(), 10000, 'start');
        client.write(upload);
        const deadline = Date.now() + 20000;
        while (back.state.length < SIZE && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 5));
        }
        assert.equal(back.state.length, SIZE, 'the backend got the upload so far');
        assert.equal(sha256(Buffer.concat(back.state.chunks)), sha256(upload));
        relay.cut();
        const end = await withTimeout(handle.closed, 20000, 'the splice to end');
        await withTimeout(back.state.done, 20000, 'the backend connection to close');
        assert.equal(end.peerEofWithoutCloseNotify, true, 'the truncation is reported');
        assert.equal(end.closeNotifyReceived, false);
        if (mode === 'reset') {
          assert.equal(back.state.ended, false, 'a cut upload must not end cleanly');
          assert.equal(back.state.errorCode, 'ECONNRESET');
        } else {
          assert.equal(back.state.ended, true);
          assert.equal(back.state.errorCode, null);
        }
        client.destroy();
      });
  }
}

// A TCP end inside a TLS record (ERR_TLS_SPLICE_TRUNCATED_RECORD) is a truncation too: under
// 'reset' the backend must get a reset, never the FIN of a dialled target's plain close.
// The target is either dialled by the splice, or the fd of a TCP socket given with autoClose (the
// engine's own duplicate is then the socket's last descriptor: its close decides FIN or RST).
async function tcpFdTo(port) {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const fd = binding.dupFd(socket._handle.fd);
  // Not the last descriptor: closing Node's own sends nothing.
  await new Promise((resolve) => socket.destroy().once('close', resolve));
  return fd;
}

for (const engine of ['native', 'js']) for (const kind of ['dialled', 'fd']) {
  test(`a peer EOF inside a TLS record, onTruncation 'reset' (${engine}, ${kind} target)`,
    { timeout: 60000 }, async () => {
      const upload = new PrngStream(`truncation/record/${engine}`).next(SIZE);
      const back = await backend();
      const { relay, client, tlsSocket } = await cutConnection();
      const target = kind === 'fd' ? await tcpFdTo(back.port)
        : { host: '127.0.0.1', port: back.port };
      const handle = spliceTo(tlsSocket, target,
        { engine, onTruncation: 'reset', autoClose: kind === 'fd' });
      await withTimeout(handle.start(), 10000, 'start');
      client.write(upload);
      const deadline = Date.now() + 20000;
      while (back.state.length < SIZE && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 5));
      }
      assert.equal(back.state.length, SIZE, 'the backend got the upload so far');
      assert.equal(sha256(Buffer.concat(back.state.chunks)), sha256(upload));
      // One more record (1000 bytes of plaintext): the server gets its first 100 bytes, then a FIN.
      relay.cutInside(100);
      client.write(Buffer.alloc(1000, 0x61));
      const end = await withTimeout(handle.closed, 20000, 'the splice to end');
      await withTimeout(back.state.done, 20000, 'the backend connection to close');
      assert.equal(end.reason, 'error');
      assert.equal(end.error?.code, 'ERR_TLS_SPLICE_TRUNCATED_RECORD');
      assert.equal(end.closeNotifyReceived, false);
      assert.equal(back.state.length, SIZE, 'nothing of the cut record reached the backend');
      assert.equal(back.state.ended, false, 'a cut record must not end the backend cleanly');
      assert.equal(back.state.errorCode, 'ECONNRESET');
      client.destroy();
    });
}

// 'reset' resets only once the target has what the peer sent before the cut: an RST discards what
// the target socket has not had acknowledged, so a busy backend lost the tail of an upload.
for (const engine of ['native', 'js']) {
  test(`onTruncation 'reset' with a backend that has not read yet: every byte before the cut reaches it (${engine})`,
    { timeout: 60000 }, async () => {
      const size = 2 * 1024 * 1024;
      const upload = new PrngStream('truncation/busy-backend').next(size);
      const back = await pausedBackend();
      const { relay, client, tlsSocket } = await cutConnection();
      const handle = spliceTo(tlsSocket, { host: '127.0.0.1', port: back.port },
        { engine, onTruncation: 'reset' });
      await withTimeout(handle.start(), 10000, 'start');
      assert.equal(handle.engine, engine);
      client.write(upload);
      // Written to the backend's socket (mostly still in its send buffer: the backend reads nothing).
      const deadline = Date.now() + 20000;
      while (handle.stats().bytesIn < size && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 5));
      }
      assert.equal(handle.stats().bytesIn, size, 'the splice wrote the upload so far');
      relay.cut();
      // The backend starts reading a little later (well within the splice's bounded wait): a reset
      // sent before it has read would discard what is still in the splice's send buffer.
      await new Promise((r) => setTimeout(r, 300));
      back.resume();
      const end = await withTimeout(handle.closed, 20000, 'the splice to end');
      await withTimeout(back.state.done, 20000, 'the backend connection to close');
      assert.equal(end.peerEofWithoutCloseNotify, true);
      assert.equal(back.state.length, size, 'the backend got every byte sent before the cut');
      assert.equal(sha256(Buffer.concat(back.state.chunks)), sha256(upload));
      client.destroy();
    });
}
