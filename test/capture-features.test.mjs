// Capture after the handshake features that change what the tap must follow: HelloRetryRequest,
// client certificates, resumed sessions (TLS 1.3 PSK resumption, TLS 1.2 tickets), PSK without
// certificates, and a negotiated max_fragment_length. Each case ends with the matrix check: the
// peer's records open at readSeq and ours sealed at writeSeq reach it intact.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { captureSession, connect, createServer, isSpliceCapable, releaseSpentSocket } from '../dist/index.js';
import { tapOf } from '../dist/tap.js';
import { CapturedEndpoint, Keylog } from './helpers/captured.mjs';
import { FIXTURES, opensslClient, opensslServer, stopAll, suiteByName } from './helpers/peers.mjs';
import {
  exchangeAndVerify, listenServer, onceEvent, openClient, openServer, read, withTimeout,
} from './helpers/scenarios.mjs';
import { requirePeer } from './helpers/programs.mjs';

after(stopAll);

const kPsk = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';

async function closeAll({ sock, server, peer }) {
  sock?.destroy();
  server?.close();
  await peer?.stop();
}

function tmpFile(name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-splice-test-'));
  return { file: path.join(dir, name), cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

// s_client -sess_out rewrites its file for every session it gets (TLS 1.3: one per ticket), each
// time truncating it first: a check that only sees a non-empty file can catch it between the two
// writes, and stopping s_client then leaves half a PEM (the resumption then never connects).
// This waits for one complete session and returns it, to be used from a file of its own.
async function waitForSession(file, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    const end = text.indexOf('-----END SSL SESSION PARAMETERS-----');
    if (text.startsWith('-----BEGIN SSL SESSION PARAMETERS-----') && end >= 0) return text;
    if (Date.now() > deadline) throw new Error(`${file} got no complete session`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('HelloRetryRequest', () => {
  test('we are the client: s_server accepts only P-256, we offer an X25519 key share first', { timeout: 20000, skip: requirePeer('openssl') }, async () => {
    const opened = await openClient('openssl', { suite: 'TLS_AES_128_GCM_SHA256', peerOpts: { groups: 'P-256' } });
    try {
      assert.equal(tapOf(opened.sock).helloRetryRequest, true, 'the tap saw a HelloRetryRequest');
      assert.equal(opened.sock.getEphemeralKeyInfo().name, 'prime256v1');
      await exchangeAndVerify({ ...opened, suite: 'TLS_AES_128_GCM_SHA256', isServer: false, seed: 'hrr-client' });
    } finally {
      await closeAll(opened);
    }
  });

  test('we are the server: only P-256, s_client offers an X25519 key share first', { timeout: 20000, skip: requirePeer('openssl') }, async () => {
    const opened = await openServer('openssl', { suite: 'TLS_CHACHA20_POLY1305_SHA256', serverOpts: { ecdhCurve: 'P-256' } });
    try {
      assert.equal(tapOf(opened.sock).helloRetryRequest, true, 'the tap saw a HelloRetryRequest');
      await exchangeAndVerify({ ...opened, suite: 'TLS_CHACHA20_POLY1305_SHA256', isServer: true, seed: 'hrr-server' });
    } finally {
      await closeAll(opened);
    }
  });
});

describe('client certificates', () => {
  for (const suite of ['TLS_AES_256_GCM_SHA384', 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256']) {
    test(`we are the client, s_server requires a certificate, ${suite}`, { timeout: 20000, skip: requirePeer('openssl') }, async () => {
      const opened = await openClient('openssl', {
        suite, peerOpts: { clientCert: true },
        connectOpts: { cert: read(FIXTURES.clientCert), key: read(FIXTURES.clientKey) },
      });
      try {
        await exchangeAndVerify({ ...opened, suite, isServer: false, seed: `cc-client-${suite}` });
      } finally {
        await closeAll(opened);
      }
    });

    for (const kind of ['openssl', 'gnutls']) {
      test(`we are the server and require a certificate, ${kind} client, ${suite}`, { timeout: 20000, skip: requirePeer(kind) }, async () => {
        const opened = await openServer(kind, {
          suite, peerOpts: { clientCert: true },
          serverOpts: { requestCert: true, rejectUnauthorized: true, ca: read(FIXTURES.ca) },
        });
        try {
          assert.equal(opened.sock.authorized, true);
          assert.match(opened.sock.getPeerCertificate().subject.CN, /test client/);
          await exchangeAndVerify({ ...opened, suite, isServer: true, seed: `cc-server-${kind}-${suite}` });
        } finally {
          await closeAll(opened);
        }
      });
    }
  }
});

describe('resumed sessions', () => {
  for (const [version, suite] of [['TLSv1.3', 'TLS_AES_128_GCM_SHA256'], ['TLSv1.2', 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384']]) {
    test(`we are the client, ${version} ${version === 'TLSv1.3' ? 'PSK resumption' : 'session ticket'}`, { timeout: 20000, skip: requirePeer('openssl') }, async () => {
      const { peer, port } = await opensslServer({ version, suite, naccept: 2 });
      let first;
      let second;
      try {
        const options = {
          host: '127.0.0.1', port, servername: 'localhost', ca: read(FIXTURES.ca),
          minVersion: version, maxVersion: version,
        };
        first = connect(options);
        const [session] = await onceEvent(first, 'session');
        assert.equal(first.isSessionReused(), false);
        first.destroy();
        await onceEvent(first, 'close');
        const keylog = new Keylog();
        second = connect({ ...options, session });
        second.on('keylog', keylog.add);
        await onceEvent(second, 'secureConnect');
        assert.equal(second.isSessionReused(), true, 'resumed');
        await exchangeAndVerify({ peer, sock: second, keylog, suite, isServer: false, seed: `resume-client-${version}` });
      } finally {
        first?.destroy();
        second?.destroy();
        await peer.stop();
      }
    });

    test(`we are the server, ${version} ${version === 'TLSv1.3' ? 'PSK resumption' : 'session ticket'}`, { timeout: 20000, skip: requirePeer('openssl') }, async () => {
      const { file, cleanup } = tmpFile('session.pem');
      const sessionFile = `${file}.complete`;
      const { server, keylog, port } = await listenServer({
        key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert), minVersion: version, maxVersion: version,
      });
      let firstPeer;
      let peer;
      let sock;
      try {
        const firstSecure = onceEvent(server, 'secureConnection');
        ({ peer: firstPeer } = await opensslClient({ port, version, suite, sessionOut: file }));
        const [firstSock] = await firstSecure;
        assert.equal(firstSock.isSessionReused(), false);
        fs.writeFileSync(sessionFile, await waitForSession(file));
        await firstPeer.stop();
        const secured = onceEvent(server, 'secureConnection');
        ({ peer } = await opensslClient({ port, version, suite, sessionIn: sessionFile }));
        [sock] = await secured;
        assert.equal(sock.isSessionReused(), true, 'resumed');
        assert.equal(isSpliceCapable(sock), true);
        await exchangeAndVerify({ peer, sock, keylog, suite, isServer: true, seed: `resume-server-${version}` });
      } finally {
        sock?.destroy();
        server.close();
        await firstPeer?.stop();
        await peer?.stop();
        cleanup();
      }
    });
  }
});

describe('PSK without certificates', () => {
  const cases = [
    { version: 'TLSv1.2', ciphers: 'PSK-AES256-GCM-SHA384', suiteId: 0x00a9, name: 'TLS_PSK_WITH_AES_256_GCM_SHA384', identity: '' },
    { version: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256', suiteId: 0x1301, name: 'TLS_AES_128_GCM_SHA256', identity: 'client1' },
  ];
  for (const c of cases) {
    const suiteArg = c.version === 'TLSv1.2' ? c.ciphers : c.name;
    const check = (session) => {
      assert.equal(session.cipherSuite, c.suiteId);
      assert.equal(session.cipherName, c.name);
      assert.equal(session.version, c.version);
    };

    test(`we are the client, ${c.version} ${c.name}, identity ${JSON.stringify(c.identity)}`, { timeout: 20000, skip: requirePeer('openssl') }, async () => {
      const psk = Buffer.from(kPsk, 'hex');
      const opened = await openClient('openssl', {
        peerOpts: { version: c.version, suite: suiteArg, noCert: true, psk: { key: kPsk, identity: c.identity } },
        connectOpts: {
          minVersion: c.version, maxVersion: c.version, ciphers: c.ciphers, ca: undefined,
          checkServerIdentity: () => undefined,
          pskCallback: () => ({ psk, identity: c.identity }),
        },
      });
      try {
        const { session } = await exchangeAndVerify({ ...opened, isServer: false, seed: `psk-client-${c.version}` });
        check(session);
      } finally {
        await closeAll(opened);
      }
    });

    test(`we are the server, ${c.version} ${c.name}, identity ${JSON.stringify(c.identity)}`, { timeout: 20000, skip: requirePeer(c.identity === '' ? 'openssl' : 'node') }, async () => {
      const psk = Buffer.from(kPsk, 'hex');
      const identities = [];
      const kind = c.identity === '' ? 'openssl' : 'node';
      const opened = await openServer(kind, {
        peerOpts: { version: c.version, suite: suiteArg, ciphers: c.ciphers, noCert: true, psk: { key: kPsk, identity: c.identity } },
        serverOpts: {
          key: undefined, cert: undefined, minVersion: c.version, maxVersion: c.version, ciphers: c.ciphers,
          pskCallback: (socket, identity) => {
            identities.push(identity);
            return psk;
          },
        },
      });
      try {
        assert.deepEqual(identities, [c.identity]);
        const { session } = await exchangeAndVerify({ ...opened, isServer: true, seed: `psk-server-${c.version}` });
        check(session);
      } finally {
        await closeAll(opened);
      }
    });
  }
});

describe('max_fragment_length', () => {
  for (const suite of ['TLS_AES_128_GCM_SHA256', 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256']) {
    test(`s_client -maxfraglen 512 against our server, ${suite}`, { timeout: 20000, skip: requirePeer('openssl') }, async () => {
      const opened = await openServer('openssl', { suite, peerOpts: { maxFragLen: 512 } });
      try {
        const { session, endpoint } = await exchangeAndVerify({ ...opened, suite, isServer: true, seed: `mfl-${suite}` });
        assert.equal(session.maxFragmentLength, 512);
        assert.ok(endpoint.maxRecordPlaintext <= 512, `peer records carry at most 512 bytes (saw ${endpoint.maxRecordPlaintext})`);
      } finally {
        await closeAll(opened);
      }
    });
  }

  test('no max_fragment_length: 16384', { timeout: 20000, skip: requirePeer('openssl') }, async () => {
    const opened = await openServer('openssl', { suite: 'TLS_AES_128_GCM_SHA256' });
    try {
      const { session } = await exchangeAndVerify({ ...opened, suite: 'TLS_AES_128_GCM_SHA256', isServer: true, seed: 'mfl-none' });
      assert.equal(session.maxFragmentLength, 16384);
    } finally {
      await closeAll(opened);
    }
  });
});

// Capturing inside the event that announces the handshake: the last flight (TLS 1.3 client
// Finished; TLS 1.2 server ticket, CCS and Finished) and the TLS 1.3 server's tickets are written
// after the event, so capture must wait for them; a TLS 1.3 client leaves the server's tickets to
// the fd (the oracle skips them as the native side will).
describe("capture at once in 'secureConnect' / 'secureConnection'", () => {
  for (const suite of ['TLS_AES_128_GCM_SHA256', 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256']) {
    for (const role of ['client', 'server']) {
      test(`we are the ${role}, ${suite}`, { timeout: 20000, skip: requirePeer('openssl') }, async () => {
        const s = suiteByName(suite);
        const tlsOpts = { minVersion: s.version, maxVersion: s.version };
        let peer;
        let server;
        let sock;
        let endpoint;
        let captured;
        try {
          const keylog = new Keylog();
          if (role === 'client') {
            let port;
            ({ peer, port } = await opensslServer({ version: s.version, suite }));
            sock = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: read(FIXTURES.ca), ...tlsOpts });
            sock.on('keylog', keylog.add);
            captured = new Promise((resolve, reject) => sock.once('secureConnect', () => captureSession(sock).then(resolve, reject)));
          } else {
            let port;
            server = createServer({ key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert), ...tlsOpts });
            server.on('keylog', keylog.add);
            captured = new Promise((resolve, reject) => server.once('secureConnection', (socket) => {
              sock = socket;
              captureSession(socket).then(resolve, reject);
            }));
            await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
            port = server.address().port;
            ({ peer } = await opensslClient({ port, version: s.version, suite }));
          }
          const session = await withTimeout(captured, 10000, 'captureSession');
          endpoint = new CapturedEndpoint(session, { keylog });
          const toUs = Buffer.from('first bytes from the peer\n');
          peer.send(toUs);
          assert.deepEqual(await endpoint.readAppData(toUs.length), toUs);
          const toPeer = Buffer.from('first bytes from the fd\n');
          await endpoint.writeAppData(toPeer);
          assert.deepEqual(await peer.waitForReceived(toPeer.length), toPeer);
          if (role === 'client' && s.version === 'TLSv1.3') {
            assert.ok(endpoint.handshakeTypes.includes(4), 'the NewSessionTickets were left to the fd');
          }
          if (role === 'server' && s.version === 'TLSv1.3') {
            assert.equal(session.writeSeq, 2n, 'both tickets Node wrote after secureConnection were counted');
          }
        } finally {
          endpoint?.close();
          if (endpoint) releaseSpentSocket(sock);
          else sock?.destroy();
          server?.close();
          await peer?.stop();
        }
      });
    }
  }
});

describe('after capture', () => {
  test('releaseSpentSocket() sends nothing: the session goes on over the fd', { timeout: 20000 }, async () => {
    const opened = await openClient('node', { suite: 'TLS_CHACHA20_POLY1305_SHA256' });
    let endpoint;
    try {
      const session = await withTimeout(captureSession(opened.sock), 10000, 'captureSession');
      endpoint = new CapturedEndpoint(session, { keylog: opened.keylog });
      const closed = onceEvent(opened.sock, 'close');
      releaseSpentSocket(opened.sock);
      await closed;
      await new Promise((r) => setTimeout(r, 50));
      assert.doesNotMatch(opened.peer.output, /END|CLOSE|ERROR/, 'the peer saw no close_notify, FIN or RST');
      opened.peer.send('still here\n');
      assert.equal((await endpoint.readAppData(11)).toString(), 'still here\n');
      await endpoint.writeAppData(Buffer.from('and so are we\n'));
      assert.equal((await opened.peer.waitForReceived(14)).toString(), 'and so are we\n');
    } finally {
      endpoint?.close();
      await closeAll(opened);
    }
  });
});
