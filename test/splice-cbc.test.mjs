// TLS 1.2 AES-CBC suites through the native engine (issue 20), against OpenSSL s_server and
// s_client: PSK and ECDHE-RSA key exchange, SHA-1 and SHA-256 MACs, MAC-then-encrypt (-no_etm)
// and encrypt-then-MAC (RFC 7366, OpenSSL's default), both roles. Each cell moves 16 MiB each
// way at once and checks length and SHA-256 on both sides with engine 'native'. SHA-384 suites
// are native with encrypt-then-MAC only: without it, 'auto' falls back to the JS engine with the
// reason and 'native' refuses. GnuTLS's gnutls-cli (a second TLS stack) against our server: PSK
// and ECDHE-RSA CBC suites, encrypt-then-MAC (its default) and MAC-then-encrypt (%NO_ETM).
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { captureSession, releaseSpentSocket, spliceTo } from '../dist/index.js';
import { closeSession } from './helpers/captured.mjs';
import { startClient, startServer, stopAll } from './helpers/peers.mjs';
import { PrngStream, sha256 } from './helpers/data.mjs';
import { ourClient, ourServer, socketPair, userSide, withTimeout } from './helpers/splice-env.mjs';
import { requirePeer } from './helpers/programs.mjs';

const SIZE = 16 * 1024 * 1024;
const PSK_HEX = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';
const PSK = Buffer.from(PSK_HEX, 'hex');
const TLS12 = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' };

after(() => stopAll());

const SUITES = [
  { openssl: 'PSK-AES128-CBC-SHA', name: 'TLS_PSK_WITH_AES_128_CBC_SHA', psk: true },
  { openssl: 'PSK-AES256-CBC-SHA', name: 'TLS_PSK_WITH_AES_256_CBC_SHA', psk: true },
  { openssl: 'ECDHE-RSA-AES128-SHA256', name: 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256', psk: false },
];
// No constant-time MAC-then-encrypt exists for HMAC-SHA384 (cbc.h): encrypt-then-MAC only.
const SHA384 = { openssl: 'ECDHE-RSA-AES256-SHA384', name: 'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384', psk: false };

// peers.mjs options for the OpenSSL side, and Node options for ours.
function peerOptions(suite, etm) {
  return {
    version: 'TLSv1.2', suite: suite.openssl, noCert: suite.psk,
    psk: suite.psk ? { key: PSK_HEX, identity: 'id' } : undefined,
    extraArgs: etm ? [] : ['-no_etm'],
  };
}

function ourOptions(suite, isServer) {
  const options = { ...TLS12, ciphers: suite.openssl };
  if (!suite.psk) return options;
  return isServer
    ? { ...options, pskCallback: (_socket, identity) => (identity === 'id' ? PSK : null) }
    : { ...options, pskCallback: () => ({ psk: PSK, identity: 'id' }), checkServerIdentity: () => undefined };
}

function prng(seed, n) {
  return new PrngStream(seed).next(n);
}

// sizes: bytes { fromPeer, toPeer }; 16 MiB each way unless a peer needs less.
async function transfer({ tlsSocket, peer, label, sizes = { fromPeer: SIZE, toPeer: SIZE } }) {
  const [spliceFd, testFd] = socketPair();
  const user = userSide(testFd);
  const handle = spliceTo(tlsSocket, spliceFd, { engine: 'native', autoClose: true });
  await handle.start();
  assert.equal(handle.engine, 'native');
  const fromPeer = prng(`${label}/from-peer`, sizes.fromPeer);
  const toPeer = prng(`${label}/to-peer`, sizes.toPeer);
  const peerSending = peer.sendAll(fromPeer);
  const userSending = user.write(toPeer);
  await user.waitFor(fromPeer.length, 60000);
  await Promise.all([peerSending, userSending]);
  await peer.waitForReceived(toPeer.length, 60000);
  assert.equal(user.length, fromPeer.length);
  assert.equal(sha256(user.received), sha256(fromPeer), 'bytes from the peer differ');
  assert.equal(peer.received.length, toPeer.length);
  assert.equal(sha256(peer.received), sha256(toPeer), 'bytes to the peer differ');
  user.socket.end();
  const end = await withTimeout(handle.closed, 20000, `${label}: splice end`);
  assert.equal(end.error, undefined, end.error?.message);
  assert.equal(end.reason, 'end');
  assert.equal(end.stats.bytesIn, fromPeer.length);
  assert.equal(end.stats.bytesOut, toPeer.length);
}

for (const suite of SUITES) {
  for (const etm of [true, false]) {
    describe(`${suite.name}, ${etm ? 'encrypt-then-MAC' : 'MAC-then-encrypt (-no_etm)'}`, () => {
      test('we are the client, openssl s_server', { timeout: 120000, skip: requirePeer('openssl') }, async () => {
        const { peer, port } = await startServer('openssl', peerOptions(suite, etm));
        try {
          const tlsSocket = await ourClient(port, ourOptions(suite, false));
          assert.equal(tlsSocket.getCipher().standardName, suite.name);
          await transfer({ tlsSocket, peer, label: `c/${suite.name}/${etm}` });
        } finally {
          await peer.stop();
        }
      });

      test('we are the server, openssl s_client', { timeout: 120000, skip: requirePeer('openssl') }, async () => {
        const ours = await ourServer(ourOptions(suite, true));
        const { peer } = await startClient('openssl', { port: ours.port, ...peerOptions(suite, etm) });
        try {
          const tlsSocket = await ours.nextSocket();
          assert.equal(tlsSocket.getCipher().standardName, suite.name);
          await transfer({ tlsSocket, peer, label: `s/${suite.name}/${etm}` });
        } finally {
          await peer.stop();
          await ours.close();
        }
      });
    });
  }
}

describe(`${SHA384.name}`, () => {
  test('encrypt-then-MAC: native, 16 MiB each way (we are the client)', { timeout: 120000, skip: requirePeer('openssl') }, async () => {
    const { peer, port } = await startServer('openssl', peerOptions(SHA384, true));
    try {
      const tlsSocket = await ourClient(port, ourOptions(SHA384, false));
      assert.equal(tlsSocket.getCipher().standardName, SHA384.name);
      await transfer({ tlsSocket, peer, label: `c/${SHA384.name}/etm` });
    } finally {
      await peer.stop();
    }
  });

  test("MAC-then-encrypt: 'auto' falls back to the JS engine and says why; bytes still move", { timeout: 60000, skip: requirePeer('openssl') }, async () => {
    const ours = await ourServer(ourOptions(SHA384, true));
    const { peer } = await startClient('openssl', { port: ours.port, ...peerOptions(SHA384, false) });
    try {
      const tlsSocket = await ours.nextSocket();
      const [spliceFd, testFd] = socketPair();
      const user = userSide(testFd);
      const handle = spliceTo(tlsSocket, spliceFd, { engine: 'auto', autoClose: true });
      await handle.start();
      assert.equal(handle.engine, 'js');
      assert.equal(handle.fallbackReason?.code, 'ERR_TLS_SPLICE_UNSUPPORTED_CIPHER');
      assert.match(handle.fallbackReason.message, /HMAC-SHA384.*encrypt_then_mac/);
      const fromPeer = prng('sha384-mte/from', 1 << 20);
      const toPeer = prng('sha384-mte/to', 1 << 20);
      await Promise.all([peer.sendAll(fromPeer), user.write(toPeer)]);
      await user.waitFor(fromPeer.length, 60000);
      await peer.waitForReceived(toPeer.length, 60000);
      assert.equal(sha256(user.received), sha256(fromPeer));
      assert.equal(sha256(peer.received), sha256(toPeer));
      user.socket.end();
      await withTimeout(handle.closed, 20000, 'js splice end');
    } finally {
      await peer.stop();
      await ours.close();
    }
  });

  test("MAC-then-encrypt: 'native' refuses with ERR_TLS_SPLICE_UNSUPPORTED_CIPHER, the socket untouched", { timeout: 60000, skip: requirePeer('openssl') }, async () => {
    const { peer, port } = await startServer('openssl', peerOptions(SHA384, false));
    try {
      const tlsSocket = await ourClient(port, ourOptions(SHA384, false));
      await assert.rejects(captureSession(tlsSocket), (err) => {
        assert.equal(err.code, 'ERR_TLS_SPLICE_UNSUPPORTED_CIPHER');
        assert.match(err.message, /TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384 and MAC-then-encrypt with HMAC-SHA384/);
        return true;
      });
      const [spliceFd] = socketPair();
      const handle = spliceTo(tlsSocket, spliceFd, { engine: 'native', autoClose: true });
      await assert.rejects(handle.start(), { code: 'ERR_TLS_SPLICE_UNSUPPORTED_CIPHER' });
      // Refused before capture took anything: Node's TLS socket still works.
      const echoed = peer.waitForReceived(5, 10000);
      tlsSocket.write('hello');
      assert.equal((await echoed).toString(), 'hello');
      tlsSocket.destroy();
    } finally {
      await peer.stop();
    }
  });
});

// GnuTLS 3.7: gnutls-cli as the client (gnutls-serv binds every address and only echoes, see
// TESTING.md). It writes what it receives one byte per write(2), so it receives 64 KiB and sends
// 4 MiB. GnuTLS negotiates encrypt-then-MAC unless the priority says %NO_ETM.
const GNUTLS_SIZES = { fromPeer: 4 * 1024 * 1024, toPeer: 64 * 1024 };
const GNUTLS_SUITES = [
  { ...SUITES[0], gnutls: 'AES-128-CBC:-MAC-ALL:+SHA1:-KX-ALL:+PSK' },
  { ...SUITES[2], gnutls: 'AES-128-CBC:-MAC-ALL:+SHA256:-KX-ALL:+ECDHE-RSA' },
];

function gnutlsOptions(suite, etm, port) {
  const priority = `NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+${suite.gnutls}${etm ? '' : ':%NO_ETM'}`;
  return {
    port, priority,
    ...(suite.psk ? { noCert: true, psk: { key: PSK_HEX, identity: 'id' } } : {}),
  };
}

for (const suite of GNUTLS_SUITES) {
  for (const etm of [true, false]) {
    test(`${suite.name}, ${etm ? 'encrypt-then-MAC' : 'MAC-then-encrypt (%NO_ETM)'}: we are the server, ` +
      'gnutls-cli; native, 4 MiB in and 64 KiB out', { timeout: 120000, skip: requirePeer('gnutls') }, async () => {
      const ours = await ourServer(ourOptions(suite, true));
      const { peer } = await startClient('gnutls', gnutlsOptions(suite, etm, ours.port));
      try {
        const tlsSocket = await ours.nextSocket(20000);
        assert.equal(tlsSocket.getCipher().standardName, suite.name);
        const session = await captureSession(tlsSocket);
        assert.equal(session.encryptThenMac, etm, 'encrypt_then_mac as GnuTLS was told');
        closeSession(session);
        releaseSpentSocket(tlsSocket);
      } finally {
        await peer.stop();
      }
      const second = await startClient('gnutls', gnutlsOptions(suite, etm, ours.port));
      try {
        const tlsSocket = await ours.nextSocket(20000);
        await transfer({ tlsSocket, peer: second.peer, label: `gnutls/${suite.name}/${etm}`, sizes: GNUTLS_SIZES });
      } finally {
        await second.peer.stop();
        await ours.close();
      }
    });
  }
}

test('captureSession reports encrypt_then_mac as the ServerHello said (RFC 7366)', { timeout: 60000, skip: requirePeer('openssl') }, async () => {
  for (const etm of [true, false]) {
    const suite = SUITES[0];
    const { peer, port } = await startServer('openssl', peerOptions(suite, etm));
    try {
      const tlsSocket = await ourClient(port, ourOptions(suite, false));
      const session = await captureSession(tlsSocket);
      assert.equal(session.encryptThenMac, etm);
      assert.equal(session.readMacKey.length, 20);
      assert.equal(session.writeMacKey.length, 20);
      closeSession(session);
      releaseSpentSocket(tlsSocket);
    } finally {
      await peer.stop();
    }
  }
});
