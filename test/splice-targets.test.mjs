// Splice targets other than a socketpair: two pipes, a TCP net.Socket (TLS <-> TCP bridge), a
// regular file each way, and the `head` option. Peers are plain node:tls in this process (a
// different code path from the tapped sockets under test). Every transfer checks length + hash.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { spliceTo, pipeToNative } from '../dist/index.js';
import { FIXTURES } from './helpers/peers.mjs';
import { PrngStream, sha256 } from './helpers/data.mjs';
import { ourClient, pipe, drain, withTimeout, socketPair, userSide } from './helpers/splice-env.mjs';

const SIZE = 16 * 1024 * 1024;
const servers = [];
after(() => { for (const s of servers) s.close(); });

// A plain node:tls server: sends `toClient`, collects what it receives; `received` resolves with
// it when the client closes its side. With endAfterClient, the server closes its side only then.
async function plainServer({ toClient = Buffer.alloc(0), tlsOptions = {}, endAfterClient = false } = {}) {
  let resolveReceived;
  const received = new Promise((resolve) => { resolveReceived = resolve; });
  const server = tls.createServer({
    key: fs.readFileSync(FIXTURES.serverKey), cert: fs.readFileSync(FIXTURES.serverCert),
    allowHalfOpen: true, ...tlsOptions,
  }, (socket) => {
    drain(socket).then((data) => {
      resolveReceived(data);
      if (endAfterClient) socket.end();
    }, resolveReceived);
    if (endAfterClient) socket.write(toClient); else socket.end(toClient);
  });
  servers.push(server);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: server.address().port, received };
}

function tmpFile(name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-splice-'));
  return path.join(dir, name);
}

test('two pipes: { readFd, writeFd }, both directions', { timeout: 60000 }, async () => {
  const toClient = new PrngStream('pipes/down').next(SIZE);
  const toServer = new PrngStream('pipes/up').next(SIZE);
  const { port, received } = await plainServer({ toClient });
  const tlsSocket = await ourClient(port);
  const [downRead, downWrite] = pipe();  // TLS -> fd lands here
  const [upRead, upWrite] = pipe();      // fd -> TLS comes from here
  const handle = spliceTo(tlsSocket, { readFd: upRead, writeFd: downWrite },
    { engine: 'native', autoClose: true });
  await handle.start();
  const down = drain(fs.createReadStream('', { fd: downRead }));
  const up = fs.createWriteStream('', { fd: upWrite });
  up.end(toServer);
  const [gotDown, gotUp, end] = await withTimeout(Promise.all([down, received, handle.closed]),
    30000, 'pipe transfer');
  assert.equal(end.reason, 'end', end.error?.message);
  assert.equal(gotDown.length, SIZE);
  assert.equal(sha256(gotDown), sha256(toClient));
  assert.equal(gotUp.length, SIZE);
  assert.equal(sha256(gotUp), sha256(toServer));
  // The peer's close closed our write pipe (natively and, with autoClose, the user's copy), so
  // the reader saw EOF; the splice closed the read pipe at the end.
  assert.throws(() => fs.fstatSync(upRead), { code: 'EBADF' });
});

test('a TCP net.Socket target: TLS <-> TCP bridge with head and buffered bytes', { timeout: 60000 },
  async () => {
    const toClient = new PrngStream('bridge/down').next(SIZE);
    const toServer = new PrngStream('bridge/up').next(SIZE);
    const head = Buffer.from('HTTP/1.1 200 Connection established\r\n\r\n');
    const { port, received } = await plainServer({ toClient });
    let backendGot;
    const backend = net.createServer({ allowHalfOpen: true }, (c) => {
      backendGot = drain(c);
      c.end(toServer);
    });
    servers.push(backend);
    await new Promise((r) => backend.listen(0, '127.0.0.1', r));
    const upstream = net.connect(backend.address().port, '127.0.0.1');
    await new Promise((r) => upstream.once('connect', r));
    // Let the backend's bytes arrive in the socket's own buffer first: they must go out first.
    await new Promise((r) => setTimeout(r, 50));
    const tlsSocket = await ourClient(port);
    const end = await withTimeout(pipeToNative(tlsSocket, upstream, { head, autoClose: true }),
      30000, 'bridge');
    assert.equal(end.reason, 'end');
    assert.equal(end.engine, 'native');
    const [gotBackend, gotServer] = await Promise.all([backendGot, received]);
    assert.equal(gotBackend.length, head.length + SIZE);
    assert.equal(sha256(gotBackend), sha256(head, toClient));
    assert.equal(gotServer.length, SIZE);
    assert.equal(sha256(gotServer), sha256(toServer));
    assert.equal(upstream.destroyed, true, 'autoClose destroys the user socket');
  });

test("a regular file target, direction 'in' (TLS -> file)", { timeout: 60000 }, async () => {
  const toClient = new PrngStream('file/in').next(SIZE);
  const { port } = await plainServer({ toClient });
  const tlsSocket = await ourClient(port);
  const file = tmpFile('in.bin');
  const fd = fs.openSync(file, 'w');
  const end = await withTimeout(pipeToNative(tlsSocket, fd, { direction: 'in' }), 30000, 'file in');
  fs.closeSync(fd);
  assert.equal(end.reason, 'end');
  assert.equal(end.closeNotifySent, true);
  const written = fs.readFileSync(file);
  assert.equal(written.length, SIZE);
  assert.equal(sha256(written), sha256(toClient));
});

test("a regular file source, direction 'out' (file -> TLS, EOF -> close_notify)",
  { timeout: 60000 }, async () => {
    const toServer = new PrngStream('file/out').next(SIZE);
    const file = tmpFile('out.bin');
    fs.writeFileSync(file, toServer);
    const { port, received } = await plainServer({ endAfterClient: true });
    const tlsSocket = await ourClient(port);
    const fd = fs.openSync(file, 'r');
    const end = await withTimeout(pipeToNative(tlsSocket, fd, { direction: 'out', autoClose: true }),
      30000, 'file out');
    assert.equal(end.reason, 'end');
    assert.equal(end.closeNotifySent, true);
    assert.equal(end.closeNotifyReceived, true);
    const got = await received;
    assert.equal(got.length, SIZE);
    assert.equal(sha256(got), sha256(toServer));
    assert.throws(() => fs.fstatSync(fd), { code: 'EBADF' }, 'autoClose closed the file');
  });

test("/dev/null as sink (not pollable) and /dev/zero as source", { timeout: 60000 }, async () => {
  const toClient = new PrngStream('devnull').next(SIZE);
  const { port } = await plainServer({ toClient });
  const tlsSocket = await ourClient(port);
  const fd = fs.openSync('/dev/null', 'w');
  try {
    const end = await withTimeout(pipeToNative(tlsSocket, fd, { direction: 'in' }), 30000,
      '/dev/null');
    assert.equal(end.stats.bytesIn, SIZE);
  } finally {
    fs.closeSync(fd);
  }
  // /dev/zero never ends: stop the splice once enough went out; every byte sent was a zero.
  let zeros = 0;
  let nonZero = 0;
  const server = tls.createServer({
    key: fs.readFileSync(FIXTURES.serverKey), cert: fs.readFileSync(FIXTURES.serverCert),
  }, (socket) => {
    socket.on('data', (d) => {
      zeros += d.length;
      for (const byte of d) if (byte !== 0) nonZero++;
    });
    socket.on('error', () => {});
  });
  servers.push(server);
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const zeroSocket = await ourClient(server.address().port);
  const zfd = fs.openSync('/dev/zero', 'r');
  try {
    const handle = spliceTo(zeroSocket, zfd, { direction: 'out' });
    await handle.start();
    while (handle.stats().bytesOut < SIZE) await new Promise((r) => setTimeout(r, 10));
    const end = await handle.stop();
    assert.equal(end.reason, 'stopped');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(nonZero, 0);
    assert.equal(zeros, end.stats.bytesOut, 'the peer got exactly what the splice sent');
  } finally {
    fs.closeSync(zfd);
  }
});

test('the peer closed its side before the splice started: half-closed session', { timeout: 60000 },
  async () => {
    const toClient = new PrngStream('early-close/down').next(100000);
    const toServer = new PrngStream('early-close/up').next(SIZE);
    // The server sends its data and close_notify at once, but keeps reading (no FIN yet).
    const { port, received } = await plainServer({ toClient });
    const tlsSocket = await ourClient(port);
    // Let Node read the data and the close_notify before capture.
    await new Promise((r) => setTimeout(r, 200));
    const [spliceFd, testFd] = socketPair();
    const user = userSide(testFd);
    const handle = spliceTo(tlsSocket, spliceFd, { engine: 'native', autoClose: true });
    // The native side passes the end to the fd before its 'end' event crosses to JS: the two
    // arrive in either order, so wait for both.
    const ended = new Promise((resolve) => handle.once('end', resolve));
    await handle.start();
    await user.waitForEnd(10000);
    await withTimeout(ended, 10000, "the handle's 'end' event");
    assert.equal(sha256(user.received), sha256(toClient));
    // Our direction still works after the peer's close.
    await user.write(toServer);
    user.socket.end();
    const [got, end] = await Promise.all([received, handle.closed]);
    assert.equal(end.reason, 'end', end.error?.message);
    assert.equal(end.closeNotifyReceived, true);
    assert.equal(got.length, SIZE);
    assert.equal(sha256(got), sha256(toServer));
  });
