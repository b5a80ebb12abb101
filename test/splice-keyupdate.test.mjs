// TLS 1.3 KeyUpdate after handover, both ways: the peer updates its key (OpenSSL `k` / `K`,
// GnuTLS `^rekey^`) and we follow it, answering update_requested; and we update our own key when
// a (deliberately low) record limit is reached, and every peer follows us. Bytes are checked on
// both sides across every key change.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spliceTo } from '../dist/index.js';
import { SUITES, startClient, stopAll, opensslServer, gnutlsClient } from './helpers/peers.mjs';
import { PrngStream, base64Lines, sha256 } from './helpers/data.mjs';
import {
  ourClient, ourServer, peerTlsOptions, socketPair, userSide, withTimeout,
} from './helpers/splice-env.mjs';
import { requirePeer } from './helpers/programs.mjs';

after(() => stopAll());

const TLS13 = SUITES.filter((s) => s.version === 'TLSv1.3');

// Our EOF becomes close_notify; the peer closes too; the splice must end without an error.
async function endCleanly(user, handle) {
  user.socket.end();
  const end = await withTimeout(handle.closed, 15000, 'splice end');
  assert.equal(end.error, undefined, end.error?.message);
}

async function waitForStat(handle, name, atLeast, timeout = 10000) {
  const deadline = Date.now() + timeout;
  while (handle.stats()[name] < atLeast) {
    if (Date.now() > deadline) {
      throw new Error(`stats.${name} stayed at ${handle.stats()[name]}, expected >= ${atLeast}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

function lines(seed, bytes) {
  return base64Lines(new PrngStream(seed).next(bytes));
}

// s_server without -quiet treats a stdin read that starts with 'Q' or 'q' as a quit command, and
// its reads start anywhere: its data is digits only.
function digitLines(seed, bytes) {
  const random = new PrngStream(seed).next(bytes);
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (i % 65 === 64) ? 0x0a : 0x30 + (random[i] % 10);
  out[bytes - 1] = 0x0a;
  return out;
}

for (const suite of TLS13) {
  test(`OpenSSL s_server sends KeyUpdate (k) and KeyUpdate requested (K): ${suite.name}`,
    { timeout: 60000, skip: requirePeer('openssl') }, async () => {
      // Not -quiet: s_server then reads 'k' / 'K' lines on stdin as commands.
      const { peer, port } = await opensslServer({ ...peerTlsOptions(suite), quiet: false });
      try {
        const tlsSocket = await ourClient(port, { suite });
        const [spliceFd, testFd] = socketPair();
        const user = userSide(testFd);
        const handle = spliceTo(tlsSocket, spliceFd, { engine: 'native', autoClose: true });
        await handle.start();

        const parts = [digitLines(`${suite.name}/1`, 400000), digitLines(`${suite.name}/2`, 400000),
          digitLines(`${suite.name}/3`, 400000)];
        let expected = 0;
        // Each command must arrive in a read of its own, so data and commands are sent apart.
        expected += parts[0].length;
        await peer.sendAll(parts[0]);
        await user.waitFor(expected);
        await peer.sendAll(Buffer.from('k\n'));
        await waitForStat(handle, 'keyUpdatesIn', 1);
        expected += parts[1].length;
        await peer.sendAll(parts[1]);
        await user.waitFor(expected);
        await peer.sendAll(Buffer.from('K\n'));
        await waitForStat(handle, 'keyUpdatesIn', 2);
        // We must have answered update_requested with our own KeyUpdate.
        await waitForStat(handle, 'keyUpdatesOut', 1);
        expected += parts[2].length;
        await peer.sendAll(parts[2]);
        await user.waitFor(expected);
        assert.equal(sha256(user.received), sha256(...parts));

        // s_server decrypts what we send under our updated key: a marker line shows in its output.
        const marker = `after-our-key-update-${suite.name}-${Date.now()}`;
        await user.write(Buffer.from(`${marker}\n`));
        await peer.waitForOutput(new RegExp(marker), 10000);
        const stats = handle.stats();
        assert.equal(stats.keyUpdatesIn, 2);
        assert.equal(stats.keyUpdatesOut, 1);
        await endCleanly(user, handle);
      } finally {
        await peer.stop();
      }
    });
}

// gnutls-cli's own documentation: "rekey1 (local rekey), rekey (rekey on both peers)" -- ^rekey^
// is the KeyUpdate with update_requested (TESTING.md has the two the other way round).
test('gnutls-cli sends KeyUpdate with update_requested (^rekey^)', { timeout: 60000, skip: requirePeer('gnutls') }, async () => {
  const suite = TLS13[0];
  const ours = await ourServer({ suite });
  const { peer } = await gnutlsClient({
    port: ours.port, ...peerTlsOptions(suite), extraArgs: ['--inline-commands'],
  });
  try {
    const tlsSocket = await ours.nextSocket();
    const [spliceFd, testFd] = socketPair();
    const user = userSide(testFd);
    const handle = spliceTo(tlsSocket, spliceFd, { engine: 'native', autoClose: true });
    await handle.start();
    const before = lines('gnutls/1', 200000);
    const afterUpdate = lines('gnutls/2', 200000);
    await peer.sendAll(before);
    await user.waitFor(before.length);
    await peer.sendAll(Buffer.from('^rekey^\n'));
    await waitForStat(handle, 'keyUpdatesIn', 1);
    await waitForStat(handle, 'keyUpdatesOut', 1);
    await peer.sendAll(afterUpdate);
    await user.waitFor(before.length + afterUpdate.length);
    assert.equal(sha256(user.received), sha256(before, afterUpdate));
    // And gnutls-cli reads what we send under our updated key.
    const back = lines('gnutls/back', 200000);
    await user.write(back);
    await peer.waitForReceived(back.length, 15000);
    assert.equal(sha256(peer.received), sha256(back));
    await endCleanly(user, handle);
  } finally {
    await peer.stop();
    await ours.close();
  }
});

// Our own KeyUpdate: at a record limit lowered to 16, a few MiB make dozens of key changes, and
// every peer must follow them (each direction of the peer decrypts under the new keys). GnuTLS
// refuses more than 8 KeyUpdates per second ("Too many handshake packets"), so with it the
// limit is 128 records: 4 key changes, at any speed.
for (const kind of ['openssl', 'gnutls', 'node']) {
  const every = kind === 'gnutls' ? 128 : 16;
  test(`we update our key every ${every} records and ${kind} follows`, { timeout: 60000, skip: requirePeer(kind) }, async () => {
    const suite = TLS13[0];
    const size = 8 * 1024 * 1024;
    const ours = await ourServer({ suite });
    const { peer } = await startClient(kind, { port: ours.port, ...peerTlsOptions(suite) });
    try {
      const tlsSocket = await ours.nextSocket();
      const [spliceFd, testFd] = socketPair();
      const user = userSide(testFd);
      const handle = spliceTo(tlsSocket, spliceFd, {
        engine: 'native', autoClose: true, keyUpdateAfterRecords: every,
      });
      await handle.start();
      const data = new PrngStream(`ours/${kind}`).next(size);
      await user.write(data);
      await peer.waitForReceived(size, 30000);
      assert.equal(sha256(peer.received), sha256(data));
      const stats = handle.stats();
      assert.ok(stats.keyUpdatesOut >= size / 16384 / every - 1,
        `expected many KeyUpdates, got ${stats.keyUpdatesOut}`);
      // The peer still talks to us after all our key changes (its own key never changed).
      const back = new PrngStream(`ours/${kind}/back`).next(1024 * 1024);
      await peer.sendAll(back);
      await user.waitFor(back.length);
      assert.equal(sha256(user.received), sha256(back));
      await endCleanly(user, handle);
    } finally {
      await peer.stop();
      await ours.close();
    }
  });
}

