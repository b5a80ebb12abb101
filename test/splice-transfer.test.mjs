// The data plane against real peers: both roles x TLS 1.3 (3 suites) and TLS 1.2 (AES-GCM,
// ChaCha20) x OpenSSL, GnuTLS and Node. Each cell moves SIZE bytes each way at once through a
// native splice into one end of a Unix socketpair and checks length and SHA-256 on both sides.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { spliceTo } from '../dist/index.js';
import { SUITES, startClient, startServer, stopAll } from './helpers/peers.mjs';
import { PrngStream, base64Lines, sha256 } from './helpers/data.mjs';
import {
  ourClient, ourServer, peerTlsOptions, socketPair, userSide, withTimeout,
} from './helpers/splice-env.mjs';
import { requirePeer } from './helpers/programs.mjs';

const SIZE = 64 * 1024 * 1024;
// gnutls-serv only echoes, line by line: the transfer is base64 lines through the echo.
const ECHO_SIZE = 16 * 1024 * 1024;
// gnutls-cli stops reading its socket while it has stdin to send, so with it the two directions
// run one after the other (the splice is duplex either way); and it writes what it receives one
// byte per write(2) (about 5 s per MiB), so what we send it is 4 MiB.
const TO_GNUTLS_CLI_SIZE = 4 * 1024 * 1024;
const PEERS = ['openssl', 'gnutls', 'node'];

after(() => stopAll());

function prng(seed, n) {
  return new PrngStream(seed).next(n);
}

async function spliceAndTransfer({ tlsSocket, peer, label, sequential = false }) {
  const [spliceFd, testFd] = socketPair();
  const user = userSide(testFd);
  const handle = spliceTo(tlsSocket, spliceFd, { engine: 'native', autoClose: true });
  await handle.start();
  assert.equal(handle.engine, 'native');

  if (peer.echo) {
    const lines = base64Lines(prng(`${label}/echo`, ECHO_SIZE * 3 / 4));
    const sending = user.write(lines);
    await user.waitFor(lines.length, 60000);
    await sending;
    assert.equal(sha256(user.received), sha256(lines), 'echoed bytes differ');
    user.socket.end();
  } else {
    const toPeerSize = sequential ? TO_GNUTLS_CLI_SIZE : SIZE;
    const fromPeer = prng(`${label}/from-peer`, SIZE);
    const toPeer = prng(`${label}/to-peer`, toPeerSize);
    const peerSending = peer.sendAll(fromPeer);
    if (sequential) await user.waitFor(SIZE, 60000);
    const userSending = user.write(toPeer);
    await user.waitFor(SIZE, 60000);
    await Promise.all([peerSending, userSending]);
    await peer.waitForReceived(toPeerSize, 60000);
    assert.equal(user.length, SIZE);
    assert.equal(sha256(user.received), sha256(fromPeer), 'bytes from the peer differ');
    assert.equal(peer.received.length, toPeerSize);
    assert.equal(sha256(peer.received), sha256(toPeer), 'bytes to the peer differ');
    // Our EOF becomes close_notify; the peer then closes, which ends the splice.
    user.socket.end();
  }
  const end = await withTimeout(handle.closed, 20000, `${label}: splice end`);
  assert.equal(end.error, undefined, end.error?.message);
  assert.equal(end.reason, 'end');
  assert.equal(end.closeNotifySent, true);
  assert.equal(end.undeliveredIn, 0);
  assert.equal(end.undeliveredOut, 0);
  assert.equal(end.stats.bytesIn, user.length);
  assert.equal(end.stats.bytesOut, peer.echo ? user.length : peer.received.length);
  return end;
}

for (const suite of SUITES) {
  describe(`${suite.version} ${suite.name}`, () => {
    for (const kind of PEERS) {
      test(`we are the client, ${kind} server`, { timeout: 120000, skip: requirePeer(kind) }, async () => {
        const { peer, port } = await startServer(kind, peerTlsOptions(suite));
        try {
          const tlsSocket = await ourClient(port, { suite });
          await spliceAndTransfer({ tlsSocket, peer, label: `c/${kind}/${suite.name}` });
        } finally {
          await peer.stop();
        }
      });

      test(`we are the server, ${kind} client`, { timeout: 120000, skip: requirePeer(kind) }, async () => {
        const ours = await ourServer({ suite });
        const { peer } = await startClient(kind, { port: ours.port, ...peerTlsOptions(suite) });
        try {
          const tlsSocket = await ours.nextSocket();
          await spliceAndTransfer({
            tlsSocket, peer, label: `s/${kind}/${suite.name}`, sequential: kind === 'gnutls',
          });
        } finally {
          await peer.stop();
          await ours.close();
        }
      });
    }
  });
}
