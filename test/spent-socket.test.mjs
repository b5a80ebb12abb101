// The spent TLSSocket after a native splice started (issue 11, "the cost of a connection"): Node's
// OpenSSL state is freed at capture, and the socket still answers what users may ask about the
// session exactly as before capture (certificates, cipher, Finished messages, session, ALPN, SNI,
// addresses), counts in bytesRead/bytesWritten what the splice moves (in 'close': the peer's
// counts), passes setNoDelay()/setKeepAlive() to the splice's TCP socket, refuses what needs the
// live session with ERR_TLS_SPLICE_SPENT, emits no 'error', and emits 'close' only when the
// splice has ended. Server side (client certificate required) and client side, each with a
// transfer checked by length and SHA-256 both ways.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { after, describe, test } from 'node:test';

import { binding } from '../dist/binding.js';
import { captureSession, connect, createServer, releaseSpentSocket, spliceTo } from '../dist/index.js';
import { prngBytes, sha256 } from './helpers/data.mjs';
import { FIXTURES, stopAll } from './helpers/peers.mjs';
import { requirePrograms } from './helpers/programs.mjs';
import { collectData, listenServer, onceEvent, read, withTimeout } from './helpers/scenarios.mjs';

after(stopAll);

const kUp = 300_000;     // client -> backend
const kDown = 200_000;   // backend -> client

// Everything a user may read from a TLSSocket about its session, in comparable form.
// getPeerX509Certificate() is left out: Node 20 answers it once on a client (a second call returns
// undefined), so it is checked on its own, once, after capture.
function answers(socket) {
  const x509 = socket.getX509Certificate();
  return {
    protocol: socket.getProtocol(),
    cipher: socket.getCipher(),
    finished: socket.getFinished(),
    peerFinished: socket.getPeerFinished(),
    session: socket.getSession(),
    ticket: socket.getTLSTicket(),
    sharedSigalgs: socket.getSharedSigalgs(),
    ephemeralKeyInfo: socket.getEphemeralKeyInfo(),
    sessionReused: socket.isSessionReused(),
    certificate: socket.getCertificate(),
    x509: x509?.fingerprint256,
    peerCertificate: socket.getPeerCertificate(),
    peerCertificateDetailed: JSON.stringify(socket.getPeerCertificate(true), (key, value) =>
      (key === 'issuerCertificate' ? value?.fingerprint256 : value)),
    alpnProtocol: socket.alpnProtocol,
    servername: socket.servername,
    authorized: socket.authorized,
    authorizationError: socket.authorizationError,
    remoteAddress: socket.remoteAddress,
    remotePort: socket.remotePort,
    localAddress: socket.localAddress,
    localPort: socket.localPort,
    bytesRead: socket.bytesRead,
    bytesWritten: socket.bytesWritten,
  };
}

// The same, without the cleartext counts: those go on counting what the splice moves.
function sessionAnswers(socket) {
  const { bytesRead, bytesWritten, ...rest } = answers(socket);
  return rest;
}

// The fd of this process's TCP socket from localPort to remotePort (loopback), found through
// its inode: `ss` names it, /proc/self/fd links to it. -1 when there is none.
function tcpFd(localPort, remotePort) {
  const out = execFileSync('ss', ['-tnHe', 'state', 'established', '(', 'sport', '=',
    `:${localPort}`, 'and', 'dport', '=', `:${remotePort}`, ')'], { encoding: 'utf8' });
  const inode = /\bino:(\d+)/.exec(out)?.[1];
  if (inode === undefined) return -1;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === `socket:[${inode}]`) return Number(fd);
    } catch {}
  }
  return -1;
}

// Socket options reach the kernel from the splice's I/O thread: waits (bounded) until `read()`
// answers `want`.
async function eventually(read, want, what) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const value = read();
    if (value === want || Date.now() > deadline) {
      assert.equal(value, want, what);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// A backend on loopback that receives kUp bytes and sends kDown bytes back.
async function startBackend() {
  const received = [];
  let gotAll;
  const all = new Promise((resolve) => { gotAll = resolve; });
  let length = 0;
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.end(prngBytes('spent-down', kDown));
    socket.on('data', (chunk) => {
      received.push(chunk);
      length += chunk.length;
      if (length >= kUp) gotAll();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    received: () => withTimeout(all, 15000, 'the upload at the backend').then(() =>
      Buffer.concat(received)),
    close: () => server.close(),
  };
}

// Splices `sock` to a fresh backend connection and checks what the spent socket answers.
async function spliceAndCheck(sock, backendPort) {
  const errors = [];
  sock.on('error', (err) => errors.push(err));
  const target = net.connect(backendPort, '127.0.0.1');
  await onceEvent(target, 'connect');
  const before = answers(sock);
  const handle = spliceTo(sock, target, { engine: 'native', autoClose: true });
  let spliceClosed = false;
  let tlsClosedAfterSplice;
  handle.on('close', () => { spliceClosed = true; });
  let countsAtClose;
  const tlsClosed = new Promise((resolve) => sock.once('close', () => {
    tlsClosedAfterSplice = spliceClosed;
    countsAtClose = [sock.bytesRead, sock.bytesWritten];
    resolve();
  }));
  await handle.start();
  assert.equal(handle.engine, 'native');
  // Node's OpenSSL state is gone; the socket itself is not destroyed.
  assert.equal(sock.ssl, null, "the spent TLSSocket's SSL was freed at capture");
  assert.equal(sock.destroyed, false);
  assert.ok(sock instanceof tls.TLSSocket);
  const { bytesRead, bytesWritten, ...session } = before;
  assert.deepEqual(sessionAnswers(sock), session, 'the same answers after capture as before');
  assert.ok(sock.bytesRead >= bytesRead && sock.bytesWritten >= bytesWritten,
    'the cleartext counts only grow');
  // An object that only inherits from the spent socket gets Node's answer, not a TypeError.
  assert.equal(typeof Object.create(sock).bytesRead, 'number');
  assert.equal(typeof Object.create(sock).bytesWritten, 'number');
  assert.equal(sock.getPeerX509Certificate()?.fingerprint256, before.peerCertificate.fingerprint256);
  // Fresh copies, as Node returns: changing one answer changes no later one.
  sock.getCipher().name = 'changed';
  sock.getPeerCertificate().subject = null;
  assert.deepEqual(sessionAnswers(sock), session);
  for (const call of [
    () => sock.exportKeyingMaterial(32, 'EXPERIMENTAL-test'),
    () => sock.setMaxSendFragment(1024),
    () => sock.setSession(Buffer.alloc(10)),
    () => sock.enableTrace(),
  ]) {
    assert.throws(call, { code: 'ERR_TLS_SPLICE_SPENT', message: /before start\(\)/ });
  }
  const renegotiation = await withTimeout(new Promise((resolve) => {
    assert.equal(sock.renegotiate({}, resolve), false);
  }), 5000, "renegotiate()'s callback");
  assert.equal(renegotiation.code, 'ERR_TLS_SPLICE_SPENT');
  // Node's own methods reached around the spent socket's, and the handle itself, throw instead
  // of reading the freed SSL (which crashes the process).
  for (const call of [
    () => tls.TLSSocket.prototype.getProtocol.call(sock),
    () => tls.TLSSocket.prototype.getPeerCertificate.call(sock, true),
    () => sock._handle.getSession(),
  ]) {
    assert.throws(call, { code: 'ERR_TLS_SPLICE_SPENT' });
  }
  assert.equal(sock.setNoDelay(true), sock);
  assert.equal(sock.setKeepAlive(true, 1000), sock);
  return { handle, tlsClosed, errors, before, closedAfterSplice: () => tlsClosedAfterSplice,
    countsAtClose: () => countsAtClose };
}

// `peer`: the other end's TLSSocket. The spent socket's cleartext counts are everything it
// received and sent, before capture and through the splice, as a plain TLSSocket's would be.
async function afterEnd(sock, check, peer) {
  const end = await withTimeout(check.handle.closed, 15000, 'the splice to end');
  assert.equal(end.reason, 'end', `the splice ended with ${end.error?.code ?? end.reason}`);
  await withTimeout(check.tlsClosed, 5000, "the TLSSocket's 'close'");
  assert.deepEqual(check.countsAtClose(), [peer.bytesWritten, peer.bytesRead],
    "bytesRead/bytesWritten in 'close' are the peer's bytesWritten/bytesRead");
  assert.deepEqual([sock.bytesRead, sock.bytesWritten], [peer.bytesWritten, peer.bytesRead]);
  assert.equal(check.closedAfterSplice(), true, "the TLSSocket's 'close' came after the splice ended");
  assert.deepEqual(check.errors, [], 'no error event on the spent TLSSocket');
  // Destroyed: Node's own answers for a destroyed TLSSocket.
  assert.equal(sock.getProtocol(), null);
  assert.equal(sock.getPeerCertificate(), null);
  assert.equal(sock.getCipher(), null);
  assert.equal(sock.remoteAddress, check.before.remoteAddress, 'addresses stay readable');
}

describe('a spent TLSSocket without its OpenSSL state', () => {
  for (const version of ['TLSv1.3', 'TLSv1.2']) {
    test(`server side, ${version}, client certificate required: same answers, refusals, close ` +
      'timing, transfer', { timeout: 30000 }, async () => {
        const backend = await startBackend();
        const { server, port } = await listenServer({
          key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert), ca: read(FIXTURES.ca),
          requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2', 'http/1.1'],
          maxVersion: version,
        });
        const spliced = new Promise((resolve, reject) => server.once('secureConnection', (sock) => {
          spliceAndCheck(sock, backend.port).then((check) => resolve({ sock, check }), reject);
        }));
        try {
          const client = tls.connect({
            port, host: '127.0.0.1', servername: 'localhost', ca: read(FIXTURES.ca),
            cert: read(FIXTURES.clientCert), key: read(FIXTURES.clientKey), ALPNProtocols: ['h2'],
          });
          const data = collectData(client);
          const clientEnded = onceEvent(client, 'end', 20000);
          const { sock, check } = await withTimeout(spliced, 15000, 'the server-side splice');
          assert.equal(check.before.protocol, version);
          assert.equal(check.before.alpnProtocol, 'h2');
          assert.equal(check.before.servername, 'localhost');
          assert.equal(check.before.authorized, true);
          assert.ok(check.before.peerCertificate.fingerprint256, 'the client certificate is there');
          const up = prngBytes('spent-up', kUp);
          client.end(up);
          const upAtBackend = await backend.received();
          assert.equal(upAtBackend.length, kUp);
          assert.equal(sha256(upAtBackend), sha256(up));
          await clientEnded;
          assert.equal(data.length, kDown);
          assert.equal(sha256(data.bytes()), sha256(prngBytes('spent-down', kDown)));
          assert.deepEqual([client.bytesWritten, client.bytesRead], [kUp, kDown]);
          await afterEnd(sock, check, client);
        } finally {
          server.close();
          backend.close();
        }
      });

  }

  test('client side (connect()): the server certificate chain and the session as before',
    { timeout: 30000 }, async () => {
      const backend = await startBackend();
      const upAtServer = [];
      const { server, port } = await listenServer({
        key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert),
      });
      // The server sends its data once the spliced side's first bytes arrive: the client reads
      // (for 'session') before the splice, and must not take any of it.
      let serverSide;
      server.on('secureConnection', (s) => {
        serverSide = s;
        s.once('data', () => s.write(prngBytes('spent-up', kUp)));
        s.on('data', (chunk) => upAtServer.push(chunk));
        s.on('end', () => s.end());
      });
      try {
        const sock = connect({ port, host: '127.0.0.1', servername: 'localhost', ca: read(FIXTURES.ca) });
        const session = onceEvent(sock, 'session', 10000);
        sock.on('data', (chunk) => assert.fail(`${chunk.length} bytes reached the TLSSocket`));
        await onceEvent(sock, 'secureConnect');
        await session;  // TLS 1.3 tickets arrive after the handshake: wait so they are not spliced
        sock.removeAllListeners('data');
        const check = await spliceAndCheck(sock, backend.port);
        assert.equal(check.before.peerCertificate.subject.CN, 'localhost');
        assert.ok(Buffer.isBuffer(check.before.session));
        const upAtBackend = await backend.received();
        assert.equal(upAtBackend.length, kUp);
        assert.equal(sha256(upAtBackend), sha256(prngBytes('spent-up', kUp)));
        // The backend's end() reaches the server: it got everything and ends too.
        await afterEnd(sock, check, serverSide);
        const down = Buffer.concat(upAtServer);
        assert.equal(down.length, kDown);
        assert.equal(sha256(down), sha256(prngBytes('spent-down', kDown)));
      } finally {
        server.close();
        backend.close();
      }
    });

  test('captureSession() alone: the socket answers from the snapshot until releaseSpentSocket()',
    { timeout: 20000 }, async () => {
      const server = createServer({ key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert) });
      await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
      const captured = new Promise((resolve, reject) => server.once('secureConnection', (sock) => {
        // Taken once the tickets are out (the server's session changes when they go).
        setTimeout(() => {
          const before = answers(sock);
          captureSession(sock).then((session) => resolve({ sock, session, before }), reject);
        }, 200);
      }));
      try {
        const client = tls.connect({ port: server.address().port, host: '127.0.0.1',
          servername: 'localhost', ca: read(FIXTURES.ca) });
        client.on('error', () => {});
        const { sock, session, before } = await withTimeout(captured, 10000, 'capture');
        assert.equal(sock.ssl, null);
        assert.deepEqual(answers(sock), before);
        assert.equal(session.version, before.protocol);
        const closed = onceEvent(sock, 'close');
        releaseSpentSocket(sock);
        await closed;
        assert.equal(sock.getProtocol(), null);
        (await import('node:fs')).closeSync(session.fd);
        client.destroy();
      } finally {
        server.close();
      }
    });

  test('setNoDelay()/setKeepAlive() of a spent TLSSocket reach the TCP socket the splice owns',
    { timeout: 30000, skip: requirePrograms('ss') }, async () => {
      const { server, port } = await listenServer({
        key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert),
      });
      const sink = net.createServer((s) => { s.resume(); s.on('error', () => {}); });
      await new Promise((resolve) => sink.listen(0, '127.0.0.1', resolve));
      try {
        const secured = onceEvent(server, 'secureConnection', 10000);
        const client = tls.connect({ port, host: '127.0.0.1', servername: 'localhost',
          ca: read(FIXTURES.ca) });
        client.on('error', () => {});
        const [sock] = await secured;
        const target = net.connect(sink.address().port, '127.0.0.1');
        await onceEvent(target, 'connect');
        const handle = spliceTo(sock, target, { engine: 'native', autoClose: true });
        await handle.start();
        // Node's copy of the fd went at capture: the one left is the splice's.
        const fd = tcpFd(sock.localPort, sock.remotePort);
        assert.ok(fd >= 0, "the splice's fd of the TLS connection");
        // spliceTo's noDelay (default true) set TCP_NODELAY when the engine started.
        assert.equal(binding.getSocketOption(fd, 'TCP_NODELAY'), true);
        assert.equal(sock.setNoDelay(false), sock);
        await eventually(() => binding.getSocketOption(fd, 'TCP_NODELAY'), false, 'setNoDelay(false)');
        assert.equal(sock.setNoDelay(), sock);
        await eventually(() => binding.getSocketOption(fd, 'TCP_NODELAY'), true, 'setNoDelay()');
        assert.equal(binding.getSocketOption(fd, 'SO_KEEPALIVE'), false);
        assert.equal(sock.setKeepAlive(true, 7000), sock);
        await eventually(() => binding.getSocketOption(fd, 'SO_KEEPALIVE'), true, 'setKeepAlive(true, 7000)');
        assert.equal(binding.getSocketOption(fd, 'TCP_KEEPIDLE'), 7, 'the initial delay, in seconds');
        assert.equal(sock.setKeepAlive(false), sock);
        await eventually(() => binding.getSocketOption(fd, 'SO_KEEPALIVE'), false, 'setKeepAlive(false)');
        client.destroy();
        await withTimeout(handle.closed, 10000, 'the splice to end');
        // After the end the fd is gone, and the calls do nothing, as on a destroyed socket.
        assert.equal(sock.setKeepAlive(true, 1000), sock);
        assert.equal(sock.setNoDelay(false), sock);
      } finally {
        server.close();
        sink.close();
      }
    });

  test('the own certificate is read once per SecureContext (the SNI one when chosen), not per splice',
    { timeout: 30000 }, async () => {
      const other = tls.createSecureContext({
        key: read(FIXTURES.clientKey), cert: read(FIXTURES.clientCert),
      });
      const { server, port } = await listenServer({
        key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert),
        SNICallback: (name, callback) => callback(null, name === 'other' ? other : undefined),
      });
      const sink = net.createServer((s) => { s.resume(); s.on('error', () => {}); });
      await new Promise((resolve) => sink.listen(0, '127.0.0.1', resolve));
      const original = tls.TLSSocket.prototype.getX509Certificate;
      let readsDuringStart = 0;
      let starting = false;
      tls.TLSSocket.prototype.getX509Certificate = function (...args) {
        if (starting) readsDuringStart++;
        return original.apply(this, args);
      };
      const fingerprints = new Map();
      try {
        for (const name of ['localhost', 'localhost', 'other', 'other']) {
          const secured = onceEvent(server, 'secureConnection', 10000);
          const client = tls.connect({ port, host: '127.0.0.1', servername: name,
            rejectUnauthorized: false });
          client.on('error', () => {});
          const [sock] = await secured;
          const before = {
            x509: sock.getX509Certificate().fingerprint256, certificate: sock.getCertificate(),
          };
          const target = net.connect(sink.address().port, '127.0.0.1');
          await onceEvent(target, 'connect');
          const handle = spliceTo(sock, target, { engine: 'native', autoClose: true });
          starting = true;
          await handle.start().finally(() => { starting = false; });
          assert.equal(sock.ssl, null);
          assert.equal(sock.getX509Certificate().fingerprint256, before.x509, name);
          assert.notEqual(sock.getX509Certificate(), sock.getX509Certificate(),
            'a fresh X509Certificate per call, as Node returns');
          assert.deepEqual(sock.getCertificate(), before.certificate, name);
          fingerprints.set(name, before.x509);
          client.destroy();
          await withTimeout(handle.closed, 10000, 'the splice to end');
        }
      } finally {
        tls.TLSSocket.prototype.getX509Certificate = original;
        server.close();
        sink.close();
      }
      assert.notEqual(fingerprints.get('localhost'), fingerprints.get('other'),
        'the SNI context has its own certificate');
      assert.equal(readsDuringStart, 2, 'one read per SecureContext, none for the second splice of each');
    });
});
