// SpliceGroup: live splices on real TLS connections (library server, node:tls clients, TCP
// backends on loopback). Membership follows `closed`; closeAll() stops gracefully (the clients
// see close_notify), aborts what its timeout catches, and stops handles added while closing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { SpliceGroup, createServer, spliceTo } from '../esm/index.mjs';
import { FIXTURES } from './helpers/peers.mjs';
import { PrngStream, sha256 } from './helpers/data.mjs';
import { floodUntilStalled } from './helpers/flood.mjs';

const closers = [];
after(() => { for (const close of closers.reverse()) close(); });

// A spliced TLS server: each connection is spliced to a new connection to `backend` (a TCP port
// on 127.0.0.1, or a Unix socket path). nextHandle() resolves with each started handle in turn.
async function splicedServer(group, backend, { add = true } = {}) {
  const handles = [];
  const waiters = [];
  let given = 0;
  const deliver = () => {
    while (waiters.length > 0 && given < handles.length) waiters.shift()(handles[given++]);
  };
  const server = createServer({ cert: fs.readFileSync(FIXTURES.serverCert),
    key: fs.readFileSync(FIXTURES.serverKey) }, (tlsSocket) => {
    const target = typeof backend === 'string' ? net.connect(backend)
      : net.connect(backend, '127.0.0.1');
    target.once('connect', async () => {
      const handle = spliceTo(tlsSocket, target, { autoClose: true });
      if (add) group.add(handle);
      await handle.start();
      handles.push(handle);
      deliver();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => server.close());
  return {
    port: server.address().port,
    nextHandle: () => new Promise((resolve) => {
      waiters.push(resolve);
      deliver();
    }),
  };
}

async function echoBackend() {
  const sockets = new Set();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => { for (const s of sockets) s.destroy(); server.close(); });
  return server.address().port;
}

// A Unix socket server whose connections are never read (pauseOnConnect: Node does not even
// start reading them).
async function stuckUnixBackend() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-splice-group-'));
  const socketPath = path.join(dir, 'backend.sock');
  const sockets = new Set();
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
  });
  await new Promise((resolve) => server.listen(socketPath, resolve));
  return {
    path: socketPath,
    server: { close: () => {
      for (const s of sockets) s.destroy();
      server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    } },
  };
}

function client(port) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: fs.readFileSync(FIXTURES.ca),
      servername: 'localhost' }, () => resolve(socket));
    socket.once('error', reject);
  });
}

async function roundTrip(socket, text) {
  const chunks = [];
  const onData = (c) => chunks.push(c);
  socket.on('data', onData);
  socket.write(text);
  while (Buffer.concat(chunks).toString() !== text) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  socket.off('data', onData);
}

test('size, iteration and membership follow each splice until it closes', { timeout: 30000 },
  async () => {
    const group = new SpliceGroup();
    const { port, nextHandle } = await splicedServer(group, await echoBackend());
    const c1 = await client(port);
    const h1 = await nextHandle();
    const c2 = await client(port);
    const h2 = await nextHandle();
    await roundTrip(c1, 'one');
    await roundTrip(c2, 'two');
    assert.equal(group.size, 2);
    assert.deepEqual(new Set(group), new Set([h1, h2]));
    assert.ok(group.has(h1));
    assert.equal(group.add(h1), h1, 'adding twice is a no-op');
    assert.equal(group.size, 2);
    const closedOne = new Promise((resolve) => group.once('close', (handle, end) =>
      resolve({ handle, end })));
    c1.on('end', () => c1.end());
    c1.end();
    const { handle, end } = await closedOne;
    assert.equal(handle, h1);
    assert.equal(end.reason, 'end');
    assert.equal(group.size, 1);
    assert.ok(!group.has(h1));
    const empty = new Promise((resolve) => group.once('empty', resolve));
    c2.on('end', () => c2.end());
    c2.end();
    await empty;
    assert.equal(group.size, 0);
    assert.equal(group.closing, false);
  });

test('closeAll(): every live splice stops gracefully (close_notify to each client), ends returned',
  { timeout: 30000 }, async () => {
    const group = new SpliceGroup();
    const { port, nextHandle } = await splicedServer(group, await echoBackend());
    const clients = [];
    for (let i = 0; i < 3; i++) {
      const c = await client(port);
      await nextHandle();
      // Bytes in flight both ways before the stop: all of them must arrive.
      const payload = new PrngStream(`group/${i}`).next(256 * 1024);
      const chunks = [];
      c.on('data', (chunk) => chunks.push(chunk));
      const ended = new Promise((resolve) => c.once('end', () => { c.end(); resolve(); }));
      c.write(payload);
      clients.push({ c, payload, chunks, ended });
      while (Buffer.concat(chunks).length < payload.length) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    assert.equal(group.size, 3);
    const ends = await group.closeAll({ timeout: 10000 });
    assert.equal(ends.length, 3);
    for (const end of ends) {
      assert.equal(end.reason, 'stopped');
      assert.equal(end.closeNotifySent, true);
      assert.equal(end.engine, 'native');
    }
    for (const { payload, chunks, ended } of clients) {
      await ended;   // the client saw close_notify
      assert.equal(sha256(Buffer.concat(chunks)), sha256(payload));
    }
    assert.equal(group.size, 0);
    assert.equal(group.closing, true);
    assert.equal(await group.closeAll(), ends, 'idempotent: the same promise');
  });

test('closeAll(): a handle added while closing is stopped too', { timeout: 30000 }, async () => {
  const group = new SpliceGroup();
  const { port, nextHandle } = await splicedServer(group, await echoBackend(), { add: false });
  assert.deepEqual(await group.closeAll(), []);
  const c = await client(port);
  c.on('end', () => c.end());
  const handle = await nextHandle();
  group.add(handle);
  const end = await handle.closed;
  assert.equal(end.reason, 'stopped');
  assert.equal(group.size, 0);
});

test('closeAll({ timeout }): a splice whose backend never reads is aborted at the deadline',
  { timeout: 30000 }, async () => {
    const group = new SpliceGroup();
    // A backend that never reads, over a Unix socket: its buffers have a fixed size (the TCP
    // ones grow by themselves, up to net.ipv4.tcp_wmem's maximum, so a TCP backend may take
    // what the splice holds at any moment), and nothing ever frees room in them.
    const { server: stuck, path: backendPath } = await stuckUnixBackend();
    closers.push(() => stuck.close());
    const { port, nextHandle } = await splicedServer(group, backendPath);
    const c = await client(port);
    c.on('error', () => {});
    const handle = await nextHandle();
    // Until every buffer on the way is full, whatever their sizes on this machine: the splice
    // then holds bytes it cannot deliver, so a graceful stop cannot complete.
    const written = await floodUntilStalled(c);
    assert.ok(handle.stats().bytesIn < written, 'the backend took the whole flood');
    const ends = await group.closeAll({ timeout: 300 });
    assert.equal(ends.length, 1);
    assert.equal(ends[0].reason, 'aborted');
    assert.ok(ends[0].undeliveredIn > 0, 'the splice held bytes it could not deliver');
    assert.equal(group.size, 0);
    c.destroy();
  });

test('invalid arguments have ERR_TLS_SPLICE_INVALID_ARG', () => {
  const group = new SpliceGroup();
  assert.throws(() => group.add({}), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  assert.throws(() => group.add(null), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  assert.throws(() => group.closeAll({ timeout: -1 }), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  assert.throws(() => group.closeAll({ timeout: 'soon' }), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  assert.equal(group.closing, false);
});
