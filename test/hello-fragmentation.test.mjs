// Hellos fragmented into 1-byte records, end to end (issue 17, item 1). A relay re-cuts one
// direction's plaintext handshake records into records of one byte each (legal: RFC 8446 5.1);
// the tap must still read the hello, link the session and let it be spliced natively, and its
// reassembler must have copied O(n) bytes for an n-byte hello (it used to copy O(n^2): 2.5 s of
// CPU for a 131 KB hello). Both roles:
//   - server: a node:tls client whose ClientHello carries ~63 KB of ALPN names, to createServer();
//   - client: connect() to a node:tls TLS 1.2 server, whose whole first flight (ServerHello,
//     Certificate, ServerKeyExchange, ServerHelloDone) arrives one byte per record.
// After the handshake the session is spliced (engine: 'native') to a plain TCP backend and 256 KiB
// cross each way, checked by length and sha256.
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, test } from 'node:test';

import { connect, createServer, isSpliceCapable, spliceTo } from '../dist/index.js';
import { tapOf } from '../dist/tap.js';
import { prngBytes, sha256 } from './helpers/data.mjs';
import { startFragmentingRelay } from './helpers/fragmenting-relay.mjs';
import { FIXTURES } from './helpers/peers.mjs';
import { onceEvent, read, withTimeout } from './helpers/scenarios.mjs';

const SIZE = 256 * 1024;
const cleanups = [];
after(() => { for (const c of cleanups) c(); });

// ~63 KB of ALPN names: the server offers none, so OpenSSL reads them and ignores them.
const BIG_ALPN = Array.from({ length: 250 }, (_, i) => `p${String(i).padStart(3, '0')}`.padEnd(250, 'x'));

function drain(socket) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('end', () => resolve(Buffer.concat(chunks)));
    socket.on('error', reject);
  });
}

// The plain TCP side of a splice: sends `toSend`, resolves with what it received.
async function backend(toSend) {
  let received;
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    received = drain(socket);
    socket.end(toSend);
  });
  cleanups.push(() => server.close());
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: server.address().port, received: () => received };
}

function assertBytes(got, sent, what) {
  assert.equal(got.length, sent.length, `${what}: length`);
  assert.equal(sha256(got), sha256(sent), `${what}: sha256`);
}

test('server role: a 63 KB ClientHello in 1-byte records is read, linked and spliced', { timeout: 120000 }, async () => {
  const toServer = prngBytes('frag-server/up', SIZE);
  const toClient = prngBytes('frag-server/down', SIZE);
  const app = await backend(toClient);
  let tapped;
  const spliced = new Promise((resolve, reject) => {
    const server = createServer({ key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert) },
      async (tlsSocket) => {
        try {
          tapped = { capable: isSpliceCapable(tlsSocket), copied: tapOf(tlsSocket).in.helloCopiedBytes };
          const handle = spliceTo(tlsSocket, { host: '127.0.0.1', port: app.port }, { engine: 'native' });
          await handle.start();
          resolve(await handle.closed);
        } catch (err) {
          reject(err);
        }
      });
    server.on('tlsClientError', reject);
    cleanups.push(() => server.close());
    server.listen(0, '127.0.0.1', async () => {
      const relay = await startFragmentingRelay({ targetPort: server.address().port, direction: 'toServer' });
      cleanups.push(() => relay.close());
      const client = tls.connect({
        host: '127.0.0.1', port: relay.port, servername: 'localhost', ca: read(FIXTURES.ca),
        ALPNProtocols: BIG_ALPN,
      });
      client.on('error', reject);
      const down = drain(client);
      await onceEvent(client, 'secureConnect', 60000);
      client.end(toServer);
      spliced.down = down;
      spliced.relay = relay;
    });
  });
  const end = await withTimeout(spliced, 90000, 'the spliced session to end');
  assert.equal(end.reason, 'end', end.error?.message);
  const helloBytes = spliced.relay.fragmentedBytes();
  assert.ok(helloBytes > 60000, `the ClientHello crossed as ${helloBytes} 1-byte records`);
  assert.equal(tapped.capable, true, 'the tap read and linked the fragmented ClientHello');
  assert.ok(tapped.copied <= 3 * helloBytes,
    `the reassembler copied ${tapped.copied} bytes for a ${helloBytes}-byte hello`);
  assertBytes(await withTimeout(spliced.down, 30000, 'the client reading'), toClient, 'to the client');
  assertBytes(await withTimeout(app.received(), 30000, 'the backend reading'), toServer, 'to the backend');
});

test('client role: a TLS 1.2 server flight in 1-byte records is read, linked and spliced', { timeout: 120000 }, async () => {
  const toServer = prngBytes('frag-client/up', SIZE);
  const toClient = prngBytes('frag-client/down', SIZE);
  let serverGot;
  const server = tls.createServer({
    key: read(FIXTURES.serverKey), cert: read(FIXTURES.serverCert), maxVersion: 'TLSv1.2',
  }, (socket) => {
    serverGot = drain(socket);
    socket.end(toClient);
  });
  cleanups.push(() => server.close());
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const relay = await startFragmentingRelay({ targetPort: server.address().port, direction: 'toClient' });
  cleanups.push(() => relay.close());
  const app = await backend(toServer);

  const ours = connect({ host: '127.0.0.1', port: relay.port, servername: 'localhost', ca: read(FIXTURES.ca) });
  await onceEvent(ours, 'secureConnect', 60000);
  assert.equal(ours.getProtocol(), 'TLSv1.2');
  assert.ok(relay.fragmentedBytes() > 1000, `the server flight crossed as ${relay.fragmentedBytes()} 1-byte records`);
  assert.equal(isSpliceCapable(ours), true);
  assert.ok(tapOf(ours).in.helloCopiedBytes <= 3 * relay.fragmentedBytes());
  const handle = spliceTo(ours, { host: '127.0.0.1', port: app.port }, { engine: 'native' });
  await handle.start();
  const end = await withTimeout(handle.closed, 60000, 'the spliced session to end');
  assert.equal(end.reason, 'end', end.error?.message);
  assertBytes(await withTimeout(serverGot, 30000, 'the TLS server reading'), toServer, 'to the TLS server');
  assertBytes(await withTimeout(app.received(), 30000, 'the backend reading'), toClient, 'to the backend');
});
