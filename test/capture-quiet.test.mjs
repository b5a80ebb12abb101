// Capture's quiet point (issue 11): capture proceeds as soon as Node provably has nothing more to
// send (its writable buffer empty, no write in the tap, and no finished write whose report to
// TLSWrap is still on its way), with no turn of the event loop on a quiet socket. And captures
// started at the moments around the handshake's end, where Node's last flight and its session
// tickets are still leaving, keep the session whole: both directions verified by length and hash.
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { after, test } from 'node:test';

import { captureSession } from '../dist/index.js';
import { CapturedEndpoint, closeSession } from './helpers/captured.mjs';
import { PrngStream, sha256 } from './helpers/data.mjs';
import { FIXTURES, stopAll } from './helpers/peers.mjs';
import { collectData, listenServer, openServer, read, withTimeout } from './helpers/scenarios.mjs';

after(stopAll);

test('a quiet socket is captured without a turn of the event loop', { timeout: 30000 }, async () => {
  const suite = 'TLS_AES_256_GCM_SHA384';
  const opened = await openServer('node', { suite });
  const { peer, sock, keylog } = opened;
  let session;
  let endpoint;
  try {
    const A = new PrngStream('quiet-A');
    const B = new PrngStream('quiet-B');
    const userRead = collectData(sock);
    const a0 = A.next(1000);
    peer.send(a0);
    await userRead.wait(a0.length);
    const b0 = B.next(700);
    sock.write(b0);
    await peer.waitForReceived(b0.length);
    // Long after the last write: every report of a finished write has reached TLSWrap.
    await new Promise((resolve) => setTimeout(resolve, 50));
    let turned = false;
    setImmediate(() => { turned = true; });
    session = await withTimeout(captureSession(sock), 10000, 'captureSession');
    assert.equal(turned, false, 'capture waited for a turn of the event loop');
    endpoint = new CapturedEndpoint(session, { keylog });
    const a1 = A.next(20000);
    peer.send(a1);
    const before = userRead.length + session.plaintext.length;
    const got = await endpoint.readAppData(a0.length + a1.length - before);
    const all = Buffer.concat([userRead.bytes(), session.plaintext, got]);
    assert.equal(all.length, a0.length + a1.length, 'bytes peer -> us');
    assert.equal(sha256(all), sha256(a0, a1), 'peer -> us hash');
    const b1 = B.next(30000);
    await endpoint.writeAppData(b1);
    const received = await peer.waitForReceived(b0.length + b1.length);
    assert.equal(received.length, b0.length + b1.length, 'bytes us -> peer');
    assert.equal(sha256(received), sha256(b0, b1), 'us -> peer hash');
    assert.equal(endpoint.error, null);
  } finally {
    if (endpoint) endpoint.close();
    else if (session) closeSession(session);
    sock.destroy();
    opened.server.close();
    await peer.stop();
  }
});

// The server is captured from its 'secureConnection' listener (inside Node's handshake
// processing, before the session tickets reach the tap), or a tick or a turn later; the client is
// a plain node:tls socket in this process that sends first, then reads what the captured side
// seals. Any byte Node wrote after the capture, or a sequence number off by one, fails the client
// (bad record MAC) or the hashes.
for (const version of ['TLSv1.3', 'TLSv1.2']) {
  for (const when of ['sync', 'tick', 'immediate']) {
    test(`${version}: capture from 'secureConnection' (${when}) keeps the session whole`, { timeout: 60000 }, async () => {
      const { server, keylog, port } = await listenServer({
        key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert),
        minVersion: version, maxVersion: version,
      });
      try {
        for (let round = 0; round < 8; round++) {
          const captured = new Promise((resolve, reject) => {
            server.once('secureConnection', (sock) => {
              const go = () => captureSession(sock).then(resolve, reject);
              if (when === 'sync') go();
              else if (when === 'tick') process.nextTick(go);
              else setImmediate(go);
            });
          });
          const client = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: read(FIXTURES.ca) });
          const clientData = collectData(client);
          let clientError = null;
          client.on('error', (err) => { clientError = err; });
          const A = new PrngStream(`secure-${version}-${when}-${round}-A`);
          const B = new PrngStream(`secure-${version}-${when}-${round}-B`);
          const a = A.next(5000);
          client.once('secureConnect', () => client.write(a));
          const session = await withTimeout(captured, 10000, 'captureSession');
          const endpoint = new CapturedEndpoint(session, { keylog });
          try {
            const got = await endpoint.readAppData(a.length - session.plaintext.length);
            const all = Buffer.concat([session.plaintext, got]);
            assert.equal(all.length, a.length, 'bytes client -> captured server');
            assert.equal(sha256(all), sha256(a), 'client -> captured server hash');
            const b = B.next(8000);
            await endpoint.writeAppData(b);
            await clientData.wait(b.length);
            assert.equal(clientData.length, b.length, 'bytes captured server -> client');
            assert.equal(sha256(clientData.bytes()), sha256(b), 'captured server -> client hash');
            assert.equal(clientError, null);
            assert.equal(endpoint.error, null);
          } finally {
            endpoint.close();
            client.destroy();
          }
        }
      } finally {
        server.close();
      }
    });
  }
}

// A TLS 1.3 server with a 'newSession' listener: Node emits it for each session ticket after
// 'secureConnection', and TLSWrap holds the tickets back until the listener calls back. Capture
// waits for that (the tickets then take sequence numbers 0 and 1), rather than proceeding while
// Node still holds records it would send later.
test("TLS 1.3: capture waits for a 'newSession' listener that has not called back", { timeout: 30000 }, async () => {
  const { server, keylog, port } = await listenServer({
    key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert),
    minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3',
  });
  let pendingSeen = 0;
  server.on('newSession', (_id, _data, done) => {
    pendingSeen++;
    setTimeout(done, 200);
  });
  const captured = new Promise((resolve, reject) => {
    server.once('secureConnection', (sock) => captureSession(sock).then(resolve, reject));
  });
  const client = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: read(FIXTURES.ca) });
  let tickets = 0;
  client.on('session', () => { tickets++; });
  let clientError = null;
  client.on('error', (err) => { clientError = err; });
  const clientData = collectData(client);
  let endpoint;
  try {
    const session = await withTimeout(captured, 10000, 'captureSession');
    assert.ok(pendingSeen > 0, "the 'newSession' listener ran");
    assert.equal(session.writeSeq, 2n, 'both session tickets went out before capture');
    endpoint = new CapturedEndpoint(session, { keylog });
    const b = new PrngStream('new-session-B').next(6000);
    await endpoint.writeAppData(b);
    await clientData.wait(b.length);
    assert.equal(sha256(clientData.bytes()), sha256(b), 'captured server -> client hash');
    assert.equal(tickets, 2, 'the client got both tickets');
    const a = new PrngStream('new-session-A').next(4000);
    client.write(a);
    const got = await endpoint.readAppData(a.length - session.plaintext.length);
    assert.equal(sha256(Buffer.concat([session.plaintext, got])), sha256(a), 'client -> captured server hash');
    assert.equal(clientError, null);
    assert.equal(endpoint.error, null);
  } finally {
    endpoint?.close();
    client.destroy();
    server.close();
  }
});
