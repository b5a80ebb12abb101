// Every refusal has its own code, happens before anything irreversible, and leaves the TLSSocket
// fully usable: after each one, bytes still flow through the TLSSocket in both directions.
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, describe, test } from 'node:test';

import { captureSession, connect, isSpliceCapable, releaseSpentSocket } from '../dist/index.js';
import { closeSession } from './helpers/captured.mjs';
import { FIXTURES, nodeServer, stopAll } from './helpers/peers.mjs';
import {
  collectData, listenServer, onceEvent, openClient, openServer, read, withTimeout,
} from './helpers/scenarios.mjs';
import { requirePeer } from './helpers/programs.mjs';

after(stopAll);

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Both directions through the TLSSocket still work (the peer prints what it receives on stdout,
// and sends what it reads on stdin).
async function assertStillWorks({ peer, sock }, data, label = 'still-works') {
  const before = data.length;
  peer.send(`${label}-from-peer\n`);
  const got = await data.wait(before + `${label}-from-peer\n`.length);
  assert.match(got.subarray(before).toString(), new RegExp(`${label}-from-peer`));
  sock.write(`${label}-from-us\n`);
  await peer.waitForOutput(new RegExp(`${label}-from-us`));
}

async function closeAll({ sock, server, peer }) {
  sock?.destroy();
  server?.close();
  await peer?.stop();
}

async function refusal(promise, code) {
  const err = await withTimeout(promise.then(() => null, (e) => e), 10000, 'captureSession');
  assert.ok(err, `captureSession resolved; expected ${code}`);
  assert.equal(err.code, code, err.message);
  assert.equal(err.name, 'SpliceError');
  return err;
}

describe('refusals', () => {
  test('ERR_TLS_SPLICE_NOT_TAPPED: a plain tls.connect socket', { timeout: 20000 }, async () => {
    const { peer, port } = await nodeServer({ version: 'TLSv1.3' });
    const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: read(FIXTURES.ca) });
    try {
      await onceEvent(sock, 'secureConnect');
      const data = collectData(sock);
      assert.equal(isSpliceCapable(sock), false);
      await refusal(captureSession(sock), 'ERR_TLS_SPLICE_NOT_TAPPED');
      await assertStillWorks({ peer, sock }, data);
    } finally {
      await closeAll({ sock, peer });
    }
  });

  test('ERR_TLS_SPLICE_NOT_TAPPED: a plain tls.createServer socket', { timeout: 20000 }, async () => {
    const server = tls.createServer({ key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert) });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const secured = onceEvent(server, 'secureConnection');
    const sock = connect({ host: '127.0.0.1', port: server.address().port, servername: 'localhost', ca: read(FIXTURES.ca) });
    try {
      const [serverSock] = await secured;
      assert.equal(isSpliceCapable(serverSock), false);
      await refusal(captureSession(serverSock), 'ERR_TLS_SPLICE_NOT_TAPPED');
    } finally {
      sock.destroy();
      server.close();
    }
  });

  test('ERR_TLS_SPLICE_NOT_ESTABLISHED: before the handshake, and after end()', { timeout: 20000 }, async () => {
    const { peer, port } = await nodeServer({ version: 'TLSv1.3' });
    const sock = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: read(FIXTURES.ca) });
    try {
      assert.equal(isSpliceCapable(sock), true);
      await refusal(captureSession(sock), 'ERR_TLS_SPLICE_NOT_ESTABLISHED');
      await onceEvent(sock, 'secureConnect');
      const data = collectData(sock);
      await assertStillWorks({ peer, sock }, data);
      sock.end();
      await refusal(captureSession(sock), 'ERR_TLS_SPLICE_NOT_ESTABLISHED');
    } finally {
      await closeAll({ sock, peer });
    }
  });

  test("ERR_TLS_SPLICE_ALREADY_CAPTURED, and a spent socket fails writes with ERR_TLS_SPLICE_SPENT, never as 'error'", { timeout: 20000 }, async () => {
    const opened = await openClient('node', { suite: 'TLS_AES_128_GCM_SHA256' });
    let session;
    try {
      const first = captureSession(opened.sock);
      await refusal(captureSession(opened.sock), 'ERR_TLS_SPLICE_ALREADY_CAPTURED');
      session = await withTimeout(first, 10000, 'captureSession');
      assert.equal(isSpliceCapable(opened.sock), false);
      await refusal(captureSession(opened.sock), 'ERR_TLS_SPLICE_ALREADY_CAPTURED');
      assert.equal(opened.sock.destroyed, false, 'capture does not destroy the TLSSocket');
      const errors = [];
      opened.sock.on('error', (e) => errors.push(e));
      const warnings = [];
      const onWarning = (w) => warnings.push(w);
      process.on('warning', onWarning);
      try {
        const writeError = await new Promise((resolve) => opened.sock.write('late', resolve));
        assert.equal(writeError?.code, 'ERR_TLS_SPLICE_SPENT');
        // end() is accepted (the splice owns our side's end): no 'finish', no 'close', no error.
        opened.sock.end('dropped too');
        await delay(50);
      } finally {
        process.off('warning', onWarning);
      }
      assert.deepEqual(errors, [], "being spent is never an 'error' event");
      assert.deepEqual(warnings.map((w) => w.code), ['ERR_TLS_SPLICE_SPENT'], 'one warning per socket');
      assert.equal(opened.sock.destroyed, false);
      // Nothing reached the peer: it printed nothing.
      await delay(50);
      assert.equal(opened.peer.received.length, 0);
    } finally {
      if (session) {
        closeSession(session);
        releaseSpentSocket(opened.sock);
      }
      await closeAll(opened);
    }
  });

  test('ERR_TLS_SPLICE_UNSUPPORTED_CIPHER: a TLS 1.2 CBC suite with RSA key exchange', { timeout: 20000, skip: requirePeer('openssl') }, async () => {
    const opened = await openClient('openssl', {
      peerOpts: { version: 'TLSv1.2', suite: 'AES128-SHA256' },
      connectOpts: { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA256' },
    });
    try {
      assert.equal(opened.sock.getCipher().standardName, 'TLS_RSA_WITH_AES_128_CBC_SHA256');
      const data = collectData(opened.sock);
      await refusal(captureSession(opened.sock), 'ERR_TLS_SPLICE_UNSUPPORTED_CIPHER');
      await assertStillWorks(opened, data);
    } finally {
      await closeAll(opened);
    }
  });

  test('ERR_TLS_SPLICE_UNSUPPORTED_VERSION: TLS 1.1', { timeout: 20000 }, async () => {
    const legacy = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' };
    const opened = await openClient('node', { peerOpts: { ...legacy, ciphers: legacy.ciphers }, connectOpts: legacy });
    try {
      assert.equal(opened.sock.getProtocol(), 'TLSv1.1');
      const data = collectData(opened.sock);
      await refusal(captureSession(opened.sock), 'ERR_TLS_SPLICE_UNSUPPORTED_VERSION');
      await assertStillWorks(opened, data);
    } finally {
      await closeAll(opened);
    }
  });

  test('ERR_TLS_SPLICE_NO_SECRETS: the keylog listener was removed before the handshake', { timeout: 20000 }, async () => {
    const { peer, port } = await nodeServer({ version: 'TLSv1.3' });
    const sock = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: read(FIXTURES.ca) });
    sock.removeAllListeners('keylog');
    try {
      await onceEvent(sock, 'secureConnect');
      const data = collectData(sock);
      await refusal(captureSession(sock), 'ERR_TLS_SPLICE_NO_SECRETS');
      await assertStillWorks({ peer, sock }, data);
    } finally {
      await closeAll({ sock, peer });
    }
  });

  // s_server/s_client read their stdin in whole chunks: the command line must arrive alone.
  for (const command of ['k', 'K']) {
    const what = command === 'k' ? 'KeyUpdate' : 'KeyUpdate requesting one back';
    test(`ERR_TLS_SPLICE_KEY_UPDATE_SEEN: s_server sent a ${what} ('${command}'), we are the client`, { timeout: 20000, skip: requirePeer('openssl') }, async () => {
      const opened = await openClient('openssl', { suite: 'TLS_AES_128_GCM_SHA256', peerOpts: { quiet: false } });
      try {
        const data = collectData(opened.sock);
        opened.peer.send(`${command}\n`);
        await delay(200);
        await assertStillWorks(opened, data, 'after-update');
        await refusal(captureSession(opened.sock), 'ERR_TLS_SPLICE_KEY_UPDATE_SEEN');
        await assertStillWorks(opened, data);
      } finally {
        await closeAll(opened);
      }
    });

    test(`ERR_TLS_SPLICE_KEY_UPDATE_SEEN: s_client sent a ${what} ('${command}'), we are the server`, { timeout: 20000, skip: requirePeer('openssl') }, async () => {
      const opened = await openServer('openssl', { suite: 'TLS_AES_256_GCM_SHA384', peerOpts: { quiet: false } });
      try {
        const data = collectData(opened.sock);
        opened.peer.send(`${command}\n`);
        await opened.peer.waitForOutput(/KEYUPDATE/);
        await assertStillWorks(opened, data, 'after-update');
        await refusal(captureSession(opened.sock), 'ERR_TLS_SPLICE_KEY_UPDATE_SEEN');
        await assertStillWorks(opened, data);
      } finally {
        await closeAll(opened);
      }
    });
  }

  test('ERR_TLS_SPLICE_KEY_UPDATE_SEEN: gnutls-cli ^rekey^, we are the server', { timeout: 20000, skip: requirePeer('gnutls') }, async () => {
    const opened = await openServer('gnutls', { suite: 'TLS_CHACHA20_POLY1305_SHA256', peerOpts: { extraArgs: ['--inline-commands'] } });
    try {
      const data = collectData(opened.sock);
      opened.peer.send('^rekey^\n');
      await delay(200);
      await assertStillWorks(opened, data, 'after-update');
      await refusal(captureSession(opened.sock), 'ERR_TLS_SPLICE_KEY_UPDATE_SEEN');
      await assertStillWorks(opened, data);
    } finally {
      await closeAll(opened);
    }
  });

  test('ERR_TLS_SPLICE_RENEGOTIATED: s_server sent a HelloRequest (TLS 1.2), we are the client', { timeout: 20000, skip: requirePeer('openssl') }, async () => {
    const opened = await openClient('openssl', { suite: 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', peerOpts: { quiet: false } });
    try {
      const data = collectData(opened.sock);
      const secureAgain = onceEvent(opened.sock, 'secure');
      opened.peer.send('R\n');
      await secureAgain;
      await refusal(captureSession(opened.sock), 'ERR_TLS_SPLICE_RENEGOTIATED');
      await assertStillWorks(opened, data);
    } finally {
      await closeAll(opened);
    }
  });

  test('ERR_TLS_SPLICE_RENEGOTIATED: s_client renegotiated (TLS 1.2), we are the server', { timeout: 20000, skip: requirePeer('openssl') }, async () => {
    const opened = await openServer('openssl', { suite: 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256', peerOpts: { quiet: false } });
    try {
      const data = collectData(opened.sock);
      opened.peer.send('R\n');
      await opened.peer.waitForOutput(/RENEGOTIATING[\s\S]*verify return:1[\s\S]*verify return:1/);
      await assertStillWorks(opened, data, 'after-renegotiation');
      await refusal(captureSession(opened.sock), 'ERR_TLS_SPLICE_RENEGOTIATED');
      await assertStillWorks(opened, data);
    } finally {
      await closeAll(opened);
    }
  });
});

describe('a hostile peer', () => {
  test('bytes that are not TLS records: ERR_TLS_SPLICE_BAD_RECORD on tlsClientError, no crash', { timeout: 20000 }, async () => {
    const { server, port } = await listenServer({ key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert) });
    try {
      const clientError = onceEvent(server, 'tlsClientError');
      const raw = net.connect(port, '127.0.0.1', () => raw.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      raw.on('error', () => {});
      const [err] = await clientError;
      assert.equal(err.code, 'ERR_TLS_SPLICE_BAD_RECORD');
      await onceEvent(raw, 'close');
      // The server still serves.
      const secured = onceEvent(server, 'secureConnection');
      const sock = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: read(FIXTURES.ca) });
      await onceEvent(sock, 'secureConnect');
      await secured;
      sock.destroy();
    } finally {
      server.close();
    }
  });

  test('an oversized record length: ERR_TLS_SPLICE_BAD_RECORD', { timeout: 20000 }, async () => {
    const { server, port } = await listenServer({ key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert) });
    try {
      const clientError = onceEvent(server, 'tlsClientError');
      const raw = net.connect(port, '127.0.0.1', () => raw.write(Buffer.from([22, 3, 1, 0xff, 0xff])));
      raw.on('error', () => {});
      const [err] = await clientError;
      assert.equal(err.code, 'ERR_TLS_SPLICE_BAD_RECORD');
      raw.destroy();
    } finally {
      server.close();
    }
  });
});
