// Shared capture scenarios: a tls-splice endpoint (client or server role) against a real peer,
// bytes exchanged through the TLSSocket first, then capture, then the fd driven by the oracle.
//
// API
//   tlsOptionsFor(suite)             { minVersion, maxVersion, ciphers } forcing a matrix suite
//   withTimeout(promise, ms, what)
//   onceEvent(emitter, event, ms)    like events.once, bounded, rejects on 'error'
//   collectData(socket)              { chunks, length, bytes(), wait(n, ms) } over 'data'
//   assertSessionShape(session, { isServer, suite, version })
//   openClient(kind, { suite, peerOpts, connectOpts })  -> { peer, sock, keylog }   (we are client)
//   openServer(kind, { suite, peerOpts, serverOpts })   -> { peer, sock, server, keylog } (we serve)
//   exchangeAndVerify({ peer, sock, keylog, session })  the matrix check after capture
//   runCell(role, kind, suiteName, extra)                open + pre-capture traffic + capture + check
import assert from 'node:assert/strict';
import fs from 'node:fs';

import { captureSession, connect, createServer, releaseSpentSocket } from '../../dist/index.js';
import { CapturedEndpoint, Keylog, closeSession } from './captured.mjs';
import { PrngStream, base64Lines, sha256 } from './data.mjs';
import { FIXTURES, startClient, startServer, suiteByName } from './peers.mjs';

export const read = (file) => fs.readFileSync(file);

export function tlsOptionsFor(suiteName) {
  const s = suiteByName(suiteName);
  return { minVersion: s.version, maxVersion: s.version, ciphers: s.version === 'TLSv1.3' ? s.name : s.openssl };
}

export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

export function onceEvent(emitter, event, ms = 5000, what = `'${event}'`) {
  return withTimeout(new Promise((resolve, reject) => {
    const onEvent = (...args) => {
      emitter.removeListener('error', onError);
      resolve(args);
    };
    const onError = (err) => {
      emitter.removeListener(event, onEvent);
      reject(err);
    };
    emitter.once(event, onEvent);
    if (event !== 'error') emitter.once('error', onError);
  }), ms, what);
}

export function collectData(socket) {
  const out = {
    chunks: [],
    length: 0,
    waiters: new Set(),
    bytes() {
      return Buffer.concat(this.chunks);
    },
    wait(n, ms = 5000) {
      return withTimeout(new Promise((resolve) => {
        const check = () => {
          if (out.length >= n) {
            out.waiters.delete(check);
            resolve(out.bytes());
          }
        };
        out.waiters.add(check);
        check();
      }), ms, `${n} bytes through the TLSSocket (has ${out.length})`);
    },
  };
  socket.on('data', (chunk) => {
    out.chunks.push(chunk);
    out.length += chunk.length;
    for (const check of out.waiters) check();
  });
  return out;
}

export function assertSessionShape(session, { isServer, suite }) {
  const s = suiteByName(suite);
  assert.equal(session.version, s.version);
  assert.equal(session.versionId, s.version === 'TLSv1.3' ? 0x0304 : 0x0303);
  assert.equal(session.cipherSuite, s.id);
  assert.equal(session.cipherName, s.name);
  assert.equal(session.isServer, isServer);
  assert.equal(session.clientRandom.length, 32);
  assert.equal(session.serverRandom.length, 32);
  assert.equal(typeof session.readSeq, 'bigint');
  assert.equal(typeof session.writeSeq, 'bigint');
  assert.ok(Number.isInteger(session.fd) && session.fd >= 0);
  assert.ok(Buffer.isBuffer(session.plaintext));
  assert.ok(Buffer.isBuffer(session.pendingCiphertext));
  if (s.version === 'TLSv1.3') {
    assert.ok(session.readSecret && session.writeSecret);
    assert.equal(session.readKey, undefined);
  } else {
    assert.ok(session.readKey && session.readIv && session.writeKey && session.writeIv);
    assert.equal(session.readSecret, undefined);
  }
}

export async function openClient(kind, { suite, peerOpts = {}, connectOpts = {} } = {}) {
  const s = suite ? suiteByName(suite) : undefined;
  const { peer, port } = await startServer(kind, { version: s?.version, suite: s?.name, ...peerOpts });
  const keylog = new Keylog();
  let sock;
  try {
    sock = connect({
      host: '127.0.0.1', port, servername: 'localhost', ca: read(FIXTURES.ca),
      ...(suite ? tlsOptionsFor(suite) : {}), ...connectOpts,
    });
    sock.on('keylog', keylog.add);
    await onceEvent(sock, 'secureConnect');
  } catch (err) {
    sock?.destroy();
    await peer.stop();
    throw err;
  }
  return { peer, sock, keylog, port };
}

export async function listenServer(options) {
  const server = createServer(options);
  const keylog = new Keylog();
  server.on('keylog', keylog.add);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, keylog, port: server.address().port };
}

export async function openServer(kind, { suite, peerOpts = {}, serverOpts = {} } = {}) {
  const s = suite ? suiteByName(suite) : undefined;
  const { server, keylog, port } = await listenServer({
    key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert),
    ...(suite ? tlsOptionsFor(suite) : {}), ...serverOpts,
  });
  const secured = onceEvent(server, 'secureConnection');
  let peer;
  try {
    ({ peer } = await startClient(kind, { port, version: s?.version, suite: s?.name, ...peerOpts }));
    const [sock] = await secured;
    return { peer, sock, server, keylog, port };
  } catch (err) {
    server.close();
    await peer?.stop();
    throw err;
  }
}

// Everything that crossed the TLSSocket before capture, and then the fd after it, must be exactly
// what each side sent: peer -> us is checked by decrypting the fd at readSeq, us -> peer by sealing
// at writeSeq and comparing what the peer printed (length and hash).
export async function exchangeAndVerify({ peer, sock, keylog, suite, isServer, seed = 'cell',
                                          readBytes = 20000, writeBytes = 30000 }) {
  const A = new PrngStream(`${seed}-A`);   // peer -> us
  const B = new PrngStream(`${seed}-B`);   // us -> peer
  const userRead = collectData(sock);
  let session;
  let endpoint;
  try {
    if (peer.echo) {
      const pre = base64Lines(B.next(300));
      sock.write(pre);
      await userRead.wait(pre.length);
      session = await withTimeout(captureSession(sock), 10000, 'captureSession');
      if (suite) assertSessionShape(session, { isServer, suite });
      endpoint = new CapturedEndpoint(session, { keylog });
      const lines = base64Lines(B.next(writeBytes));
      await endpoint.writeAppData(lines);
      const expected = Buffer.concat([pre, lines]);
      const before = userRead.length + session.plaintext.length;
      const echoed = await endpoint.readAppData(expected.length - before);
      const all = Buffer.concat([userRead.bytes(), session.plaintext, echoed]);
      assert.equal(all.length, expected.length, 'echoed length');
      assert.equal(sha256(all), sha256(expected), 'echoed bytes');
    } else {
      const a0 = A.next(1000);
      peer.send(a0);
      await userRead.wait(a0.length);
      const b0 = B.next(700);
      sock.write(b0);
      session = await withTimeout(captureSession(sock), 10000, 'captureSession');
      if (suite) assertSessionShape(session, { isServer, suite });
      endpoint = new CapturedEndpoint(session, { keylog });
      const a1 = A.next(readBytes);
      peer.send(a1);
      const before = userRead.length + session.plaintext.length;
      const got = await endpoint.readAppData(a0.length + a1.length - before);
      const all = Buffer.concat([userRead.bytes(), session.plaintext, got]);
      assert.equal(all.length, a0.length + a1.length, 'bytes peer -> us');
      assert.equal(sha256(all), sha256(a0, a1), 'peer -> us hash');
      const b1 = B.next(writeBytes);
      await endpoint.writeAppData(b1);
      const received = await peer.waitForReceived(b0.length + b1.length);
      assert.equal(received.length, b0.length + b1.length, 'bytes us -> peer');
      assert.equal(sha256(received), sha256(b0, b1), 'us -> peer hash');
    }
    assert.equal(endpoint.error, null);
    return { session, endpoint };
  } finally {
    if (endpoint) endpoint.close();
    else if (session) closeSession(session);
    if (session) releaseSpentSocket(sock);
  }
}

export async function runCell(role, kind, suite, extra = {}) {
  const opened = role === 'client' ?
    await openClient(kind, { suite, ...extra }) :
    await openServer(kind, { suite, ...extra });
  try {
    return await exchangeAndVerify({ ...opened, suite, isServer: role === 'server', ...extra.verify });
  } finally {
    opened.sock.destroy();
    opened.server?.close();
    await opened.peer.stop();
  }
}
