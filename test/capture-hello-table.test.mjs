// The server's table of pending hellos (issue 10, item 7): connections whose ClientHello the tap
// read, by client random, until their TLSSocket logs its first secret. Raw TCP clients replay one
// real ClientHello (from a plain node:tls client) on two connections each, so every pair shares a
// random: neither connection of a pair may ever be linked, and when they close nothing of them
// may stay in the table. An SNICallback holds every handshake after its ClientHello (as an async
// certificate lookup does) until both hellos of every pair were read, so both are pending at once.
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, test } from 'node:test';

import { connect, createServer, isSpliceCapable } from '../dist/index.js';
import { pendingHelloCount } from '../dist/server.js';
import { FIXTURES } from './helpers/peers.mjs';
import { onceEvent, read, withTimeout } from './helpers/scenarios.mjs';

const PAIRS = 100;
const servers = [];
after(() => { for (const s of servers) s.close(); });

// One ClientHello record as node:tls sends it; each call makes a new random.
async function realClientHello() {
  const catcher = net.createServer();
  servers.push(catcher);
  await new Promise((resolve) => catcher.listen(0, '127.0.0.1', resolve));
  const hello = new Promise((resolve) => {
    catcher.once('connection', (socket) => {
      let got = Buffer.alloc(0);
      socket.on('data', (chunk) => {
        got = Buffer.concat([got, chunk]);
        if (got.length >= 5 && got.length >= 5 + got.readUInt16BE(3)) {
          resolve(got.subarray(0, 5 + got.readUInt16BE(3)));
          socket.destroy();
        }
      });
    });
  });
  // servername: the hello carries SNI, so the server calls its SNICallback.
  const client = tls.connect({ host: '127.0.0.1', port: catcher.address().port, servername: 'localhost' });
  client.on('error', () => {});
  const record = await withTimeout(hello, 5000, 'a ClientHello');
  client.destroy();
  catcher.close();
  assert.equal(record[0], 22, 'a handshake record');
  assert.equal(record[5], 1, 'holding a ClientHello');
  return record;
}

// A raw connection that sends `hello`; with `answered`, resolves once the server answered (so
// the server's tap has read the ClientHello).
async function replay(port, hello, { answered = true } = {}) {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  await onceEvent(socket, 'connect');
  const answer = answered ? onceEvent(socket, 'data', 5000, "the server's answer") : null;
  socket.write(hello);
  await answer;
  return socket;
}

async function waitUntil(predicate, what, ms = 10000) {
  await withTimeout(new Promise((resolve) => {
    const poll = () => (predicate() ? resolve() : setTimeout(poll, 10));
    poll();
  }), ms, what);
}

test('two connections with one ClientHello random: neither is linked, and both leave the table', { timeout: 60000 }, async () => {
  const secured = [];
  const held = [];
  const context = tls.createSecureContext({ key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert) });
  const server = createServer({
    key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert),
    SNICallback: (name, callback) => held.push(() => callback(null, context)),
  }, (socket) => secured.push(socket));
  server.on('tlsClientError', () => {});
  servers.push(server);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();

  const raw = [];
  for (let i = 0; i < PAIRS; i++) {
    const hello = await realClientHello();
    raw.push(await replay(port, hello, { answered: false }), await replay(port, hello, { answered: false }));
  }
  await waitUntil(() => held.length === 2 * PAIRS, `${2 * PAIRS} held handshakes (has ${held.length})`);
  // Each pair is one entry while its connections are open.
  assert.equal(pendingHelloCount(server), PAIRS);
  // The handshakes go on: their secrets name a random two connections sent, so none is linked.
  for (const release of held.splice(0)) release();
  await Promise.all(raw.map((socket) => onceEvent(socket, 'data', 5000, "the server's answer")));
  assert.equal(pendingHelloCount(server), PAIRS);

  // A genuine client meanwhile is linked and spliceable.
  const accepted = new Promise((resolve) => server.once('secureConnection', resolve));
  const good = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: read(FIXTURES.ca) });
  await waitUntil(() => held.length === 1, 'the genuine handshake to reach SNICallback');
  held.pop()();
  await onceEvent(good, 'secureConnect');
  const serverSide = await withTimeout(accepted, 5000, 'secureConnection');
  assert.equal(isSpliceCapable(serverSide), true);
  good.destroy();

  for (const socket of raw) socket.destroy();
  await waitUntil(() => pendingHelloCount(server) === 0,
    `an empty table (has ${pendingHelloCount(server)} entries)`);
  await new Promise((resolve) => server.getConnections((err, n) => {
    assert.equal(err, null);
    resolve(n);
  }));
  assert.equal(secured.length, 1, 'no replayed connection completed a handshake');
});

test('a connection that closes before its first secret leaves the table', { timeout: 20000 }, async () => {
  const server = createServer({ key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert) });
  server.on('tlsClientError', () => {});
  servers.push(server);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  const sockets = [];
  for (let i = 0; i < 20; i++) sockets.push(await replay(port, await realClientHello()));
  // TLS 1.3: the server logs its handshake secrets with its first flight, so these are linked
  // already; what remains in the table may only be what is still in flight.
  for (const socket of sockets) socket.destroy();
  await waitUntil(() => pendingHelloCount(server) === 0,
    `an empty table (has ${pendingHelloCount(server)} entries)`);
});
