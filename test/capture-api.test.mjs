// connect() and createServer() behave like tls.connect() and tls.createServer() before any
// splice: argument forms, ALPN, SNI, certificates, sessions, 'keylog' for the user, addresses,
// errors, end/close, upgrading a plaintext socket, and server.emit('connection', socket).
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, describe, test } from 'node:test';

import {
  SpliceError, SpliceServer, captureSession, connect, createServer, isSpliceCapable, releaseSpentSocket,
} from '../dist/index.js';
import * as esm from '../esm/index.mjs';
import { CapturedEndpoint, Keylog } from './helpers/captured.mjs';
import { FIXTURES, freePort, nodeServer, stopAll } from './helpers/peers.mjs';
import { collectData, listenServer, onceEvent, read, withTimeout } from './helpers/scenarios.mjs';

after(stopAll);

const serverOptions = () => ({ key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert) });
const clientOptions = () => ({ servername: 'localhost', ca: read(FIXTURES.ca) });

describe('exports', () => {
  test('CommonJS and ESM entry points', () => {
    assert.equal(typeof connect, 'function');
    assert.equal(typeof createServer, 'function');
    assert.equal(typeof captureSession, 'function');
    assert.equal(esm.connect, connect);
    assert.equal(esm.captureSession, captureSession);
    assert.equal(esm.SpliceServer, SpliceServer);
    assert.ok(createServer(serverOptions()) instanceof tls.Server);
    assert.ok(new SpliceError('ERR_X', 'm') instanceof Error);
  });
});

describe('connect()', () => {
  test('(port, host, options, listener) form, secureConnect, addresses, keylog, session', { timeout: 20000 }, async () => {
    const { server, port } = await listenServer({ ...serverOptions(), maxVersion: 'TLSv1.2' });
    server.on('secureConnection', (s) => s.end('bye'));
    try {
      const keylog = new Keylog();
      let listenerCalled = false;
      const sock = connect(port, '127.0.0.1', clientOptions(), () => { listenerCalled = true; });
      assert.ok(sock instanceof tls.TLSSocket);
      sock.on('keylog', keylog.add);
      const connected = onceEvent(sock, 'connect');
      const sessionEvent = onceEvent(sock, 'session');
      await onceEvent(sock, 'secureConnect');
      await connected;
      assert.ok(listenerCalled);
      assert.equal(sock.authorized, true);
      assert.equal(sock.getPeerCertificate().subject.CN, 'localhost');
      assert.equal(sock.remoteAddress, '127.0.0.1');
      assert.equal(sock.remotePort, port);
      assert.equal(sock.address().address, '127.0.0.1');
      assert.ok(sock.localPort > 0);
      assert.ok(keylog.lines.some((l) => l.startsWith('CLIENT_RANDOM ')), 'the user gets keylog lines');
      const [session] = await sessionEvent;
      assert.ok(Buffer.isBuffer(session));
      assert.ok(Buffer.isBuffer(sock.getSession()));
      const data = collectData(sock);
      await onceEvent(sock, 'end');
      assert.equal(data.bytes().toString(), 'bye');
      await onceEvent(sock, 'close');
    } finally {
      server.close();
    }
  });

  test('ALPN and SNI (SNICallback) with a tls-splice server', { timeout: 20000 }, async () => {
    const names = [];
    const { server, port } = await listenServer({
      ...serverOptions(),
      ALPNProtocols: ['h2', 'http/1.1'],
      SNICallback: (name, cb) => {
        names.push(name);
        cb(null, tls.createSecureContext(serverOptions()));
      },
    });
    try {
      const secured = onceEvent(server, 'secureConnection');
      const sock = connect({ host: '127.0.0.1', port, ...clientOptions(), ALPNProtocols: ['http/1.1'] });
      await onceEvent(sock, 'secureConnect');
      const [serverSock] = await secured;
      assert.equal(sock.alpnProtocol, 'http/1.1');
      assert.equal(serverSock.alpnProtocol, 'http/1.1');
      assert.equal(serverSock.servername, 'localhost');
      assert.deepEqual(names, ['localhost']);
      assert.equal(isSpliceCapable(sock), true);
      assert.equal(isSpliceCapable(serverSock), true);
      assert.equal(serverSock.remoteAddress, '127.0.0.1');
      assert.equal(serverSock.remotePort, sock.localPort);
      sock.destroy();
    } finally {
      server.close();
    }
  });

  test('errors keep their code: ECONNREFUSED, and certificate verification', { timeout: 20000 }, async () => {
    const port = await freePort();
    const refused = connect({ host: '127.0.0.1', port, ...clientOptions() });
    const [err] = await onceEvent(refused, 'error').then((a) => a, (e) => [e]);
    assert.equal(err.code, 'ECONNREFUSED');

    const { peer, port: peerPort } = await nodeServer({ version: 'TLSv1.3' });
    try {
      const sock = connect({ host: '127.0.0.1', port: peerPort, servername: 'localhost' });
      const [verifyError] = await onceEvent(sock, 'error').then((a) => a, (e) => [e]);
      assert.equal(verifyError.code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    } finally {
      await peer.stop();
    }
  });

  test('the peer closing ends and closes the socket without an error', { timeout: 20000 }, async () => {
    const { peer, port } = await nodeServer({ version: 'TLSv1.3' });
    const sock = connect({ host: '127.0.0.1', port, ...clientOptions() });
    const errors = [];
    sock.on('error', (e) => errors.push(e));
    try {
      await onceEvent(sock, 'secureConnect');
      const data = collectData(sock);
      peer.send('last words\n');
      await data.wait(11);
      const ended = onceEvent(sock, 'end');
      const closed = onceEvent(sock, 'close');
      peer.child.stdin.end();
      peer.child.kill('SIGTERM');
      await ended;
      await closed;
      assert.deepEqual(errors, []);
    } finally {
      sock.destroy();
      await peer.stop();
    }
  });

  test('options.socket: upgrade a plaintext connection (STARTTLS), served by server.emit(\'connection\')', { timeout: 20000 }, async () => {
    const server = createServer(serverOptions());
    const keylog = new Keylog();
    server.on('keylog', keylog.add);
    // A plaintext protocol first: "STARTTLS\n" -> "OK\n", then the socket goes to the TLS server.
    const plain = net.createServer((socket) => {
      let buffered = '';
      const onData = (chunk) => {
        buffered += chunk.toString('latin1');
        if (!buffered.includes('\n')) return;
        socket.removeListener('data', onData);
        socket.pause();
        socket.write('OK\n', () => server.emit('connection', socket));
      };
      socket.on('data', onData);
    });
    await new Promise((resolve) => plain.listen(0, '127.0.0.1', resolve));
    let client;
    let session;
    let endpoint;
    try {
      const raw = net.connect(plain.address().port, '127.0.0.1');
      await onceEvent(raw, 'connect');
      raw.write('STARTTLS\n');
      await new Promise((resolve) => raw.once('data', (d) => {
        assert.equal(d.toString(), 'OK\n');
        resolve();
      }));
      const secured = onceEvent(server, 'secureConnection');
      const clientKeylog = new Keylog();
      client = connect({ socket: raw, ...clientOptions() });
      client.on('keylog', clientKeylog.add);
      await onceEvent(client, 'secureConnect');
      const [serverSock] = await secured;
      assert.equal(client.remotePort, plain.address().port);
      const serverData = collectData(serverSock);
      const clientData = collectData(client);
      client.write('ping');
      await serverData.wait(4);
      serverSock.write('pong');
      await clientData.wait(4);
      // Capture the client; the server side stays a plain JS TLSSocket and checks the bytes.
      session = await withTimeout(captureSession(client), 10000, 'captureSession');
      endpoint = new CapturedEndpoint(session, { keylog: clientKeylog });
      serverSock.write('after capture');
      assert.equal((await endpoint.readAppData(13)).toString(), 'after capture');
      await endpoint.writeAppData(Buffer.from('sealed by the oracle'));
      assert.equal((await serverData.wait(4 + 20)).subarray(4).toString(), 'sealed by the oracle');
      serverSock.destroy();
    } finally {
      endpoint?.close();
      if (session) releaseSpentSocket(client);
      else client?.destroy();
      plain.close();
      server.close();
    }
  });

  test('pauseOnConnect on the server: paused TLSSocket, as with tls.Server', { timeout: 20000 }, async () => {
    const { server, port } = await listenServer({ ...serverOptions(), pauseOnConnect: true });
    const sock = connect({ host: '127.0.0.1', port, ...clientOptions() });
    try {
      const secured = onceEvent(server, 'secureConnection');
      await onceEvent(sock, 'secureConnect');
      const [serverSock] = await secured;
      assert.equal(serverSock.readableFlowing, false, 'created paused, as tls.Server does');
      const data = collectData(serverSock);
      serverSock.resume();
      sock.write('hello');
      await data.wait(5);
    } finally {
      sock.destroy();
      server.close();
    }
  });
});
