// Inactivity limits (SpliceOptions idleTimeout / finTimeout; issue 17, item 5), against both
// engines. The peer is plain node:tls over a TCP connection the test controls
// (helpers/bridged-peer.mjs); our side is a tls-splice connect() socket; the target is one end of
// a socketpair whose other end is the test's.
//
//   - quiet both ways: ends with reason 'idle' no sooner than the limit, the peer gets our
//     close_notify, the target an end (EOF), and the bytes before it arrived whole;
//   - a byte every 200 ms (alternating directions) with idleTimeout 1000 does not end it;
//   - issue 17's case: the peer sends 2 MiB, close_notify and leaves; the target stops reading
//     once the peer's FIN has left. finTimeout ends it (reason 'idle') and every fd is released;
//   - invalid limits are refused with ERR_TLS_SPLICE_INVALID_ARG.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { before, test } from 'node:test';

import { spliceTo } from '../esm/index.mjs';
import { binding } from '../dist/binding.js';
import { bridgedServer } from './helpers/bridged-peer.mjs';
import { prngBytes, sha256 } from './helpers/data.mjs';
import { assertFdsBack, fdCount } from './helpers/resources.mjs';
import { ourClient, socketPair, userSide, withTimeout } from './helpers/splice-env.mjs';

const ENGINES = ['native', 'js'];
const WAIT = 20000;

function closeQuietly(fd) {
  try {
    fs.closeSync(fd);
  } catch {
    // Closed already (autoClose).
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function session() {
  const server = await bridgedServer({ minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
  const socket = await ourClient(server.port);
  const peer = await server.nextPeer();
  await withTimeout(peer.secure, WAIT, "the peer's handshake");
  return {
    socket, peer,
    async dispose() {
      socket.destroy();
      await server.close();
    },
  };
}

async function started(socket, target, options) {
  const handle = spliceTo(socket, target, options);
  await handle.start();
  assert.equal(handle.engine, options.engine);
  return handle;
}

function assertBytes(got, want, what) {
  assert.equal(got.length, want.length, `${what}: length`);
  assert.equal(sha256(got), sha256(want), `${what}: SHA-256`);
}

// The native engine's I/O threads and their fds stay for the process: start them before any fd
// count is taken.
before(async () => {
  const s = await session();
  const [fd, testFd] = socketPair();
  try {
    const handle = await started(s.socket, fd, { engine: 'native' });
    await handle.stop({ graceful: false });
  } finally {
    closeQuietly(fd);
    closeQuietly(testFd);
    await s.dispose();
  }
});

for (const engine of ENGINES) {
  test(`${engine}: quiet both ways for idleTimeout ends the splice with reason 'idle', ` +
       'close_notify to the peer and an end to the target', { timeout: 60000 }, async () => {
    const IDLE = 600;
    const s = await session();
    const [fd, testFd] = socketPair();
    const user = userSide(testFd);
    try {
      const handle = await started(s.socket, fd, { engine, idleTimeout: IDLE, autoClose: true });
      const IN = prngBytes(`idle in ${engine}`, 100 * 1024);
      const OUT = prngBytes(`idle out ${engine}`, 70 * 1024);
      await s.peer.send(IN);
      await user.write(OUT);
      await withTimeout(Promise.all([user.waitFor(IN.length), s.peer.waitFor(OUT.length)]),
        WAIT, 'the bytes before the quiet');
      const quietFrom = Date.now();
      const end = await withTimeout(handle.closed, WAIT, "the idle end");
      const quietFor = Date.now() - quietFrom;
      assert.equal(end.reason, 'idle', end.error?.message);
      assert.equal(end.error, undefined);
      assert.equal(end.engine, engine);
      // Never before the limit (with room for the time the last byte took to be read here).
      assert.ok(quietFor >= IDLE / 2, `ended after ${quietFor} ms of quiet, limit ${IDLE} ms`);
      assert.equal(end.closeNotifySent, true, 'our close_notify');
      assert.equal(end.closeNotifyReceived, false);
      assert.equal(end.undeliveredIn, 0);
      assert.equal(end.undeliveredOut, 0);
      await withTimeout(s.peer.ended, WAIT, 'our close_notify at the peer');
      await withTimeout(user.waitForEnd(), WAIT, 'the end (EOF) at the target');
      assertBytes(user.received, IN, 'peer -> target');
      assertBytes(s.peer.received, OUT, 'target -> peer');
      assert.equal(end.stats.bytesIn, IN.length);
      assert.equal(end.stats.bytesOut, OUT.length);
    } finally {
      user.socket.destroy();
      closeQuietly(fd);
      await s.dispose();
    }
  });

  test(`${engine}: a byte every 200 ms either way keeps a splice with idleTimeout 1000 alive`,
    { timeout: 60000 }, async () => {
      const s = await session();
      const [fd, testFd] = socketPair();
      const user = userSide(testFd);
      try {
        const handle = await started(s.socket, fd, { engine, idleTimeout: 1000, autoClose: true });
        let ended = null;
        void handle.closed.then((end) => { ended = end; });
        const IN = prngBytes(`trickle in ${engine}`, 8);
        const OUT = prngBytes(`trickle out ${engine}`, 8);
        // 16 bytes, 200 ms apart, alternating directions: 3.2 s, over three idle periods.
        for (let i = 0; i < 8; i++) {
          await s.peer.send(IN.subarray(i, i + 1));
          await sleep(200);
          await user.write(OUT.subarray(i, i + 1));
          await sleep(200);
          assert.equal(ended, null, `ended after ${2 * i + 2} bytes: ${JSON.stringify(ended)}`);
        }
        await withTimeout(Promise.all([user.waitFor(IN.length), s.peer.waitFor(OUT.length)]),
          WAIT, 'the trickled bytes');
        assertBytes(user.received, IN, 'peer -> target');
        assertBytes(s.peer.received, OUT, 'target -> peer');
        assert.equal(ended, null);
        // And once the bytes stop, the limit applies.
        const end = await withTimeout(handle.closed, WAIT, 'the idle end after the trickle');
        assert.equal(end.reason, 'idle', end.error?.message);
      } finally {
        user.socket.destroy();
        closeQuietly(fd);
        await s.dispose();
      }
    });

  test(`${engine}: issue 17 — the peer sends 2 MiB, close_notify and leaves, the target stops ` +
       'reading: finTimeout ends the splice and every fd is released', { timeout: 60000 }, async () => {
    const FIN = 800;
    const baseline = fdCount();
    const s = await session();
    const [fd, testFd] = socketPair();
    const user = userSide(testFd);
    user.socket.pause();
    let disposed = false;
    try {
      // No idleTimeout: only the peer's end can make the limit apply.
      const handle = await started(s.socket, fd, { engine, finTimeout: FIN, autoClose: true });
      const IN = prngBytes(`fin in ${engine}`, 2 * 1024 * 1024);
      void s.peer.send(IN).catch(() => {});
      s.peer.close();
      // The target trickles only while the peer's kernel still holds bytes: once the peer's FIN
      // is sent and acknowledged it is in the splice's socket, however small the buffers on the
      // way; from then on the target reads nothing, and what the splice holds stays in it.
      const rawFd = s.peer.raw._handle.fd;
      const peerFlushed = () => s.peer.raw.writableFinished && binding.socketSendQueue(rawFd) === 0;
      const deadline = Date.now() + WAIT;
      while (!peerFlushed()) {
        if (Date.now() > deadline) throw new Error("the peer's FIN never left");
        // 16 KiB per 5 ms: far slower than the splice, so its buffers stay full behind it.
        user.socket.read(16 * 1024);
        await sleep(5);
      }
      s.peer.destroy();
      const leftAt = Date.now();
      const end = await withTimeout(handle.closed, WAIT, 'the finTimeout end');
      assert.equal(end.reason, 'idle', end.error ? `${end.error.code}: ${end.error.message}` : '');
      assert.equal(end.error, undefined);
      assert.ok(Date.now() - leftAt >= FIN / 2, 'ended before finTimeout');
      // What the target did take is the peer's bytes, in order.
      assertBytes(user.received, IN.subarray(0, user.received.length), 'peer -> target prefix');
      // Everything of the splice's is closed: with the test's own ends closed, the count is back.
      user.socket.destroy();
      await s.dispose();
      disposed = true;
      await assertFdsBack(baseline, 'after the finTimeout end');
    } finally {
      user.socket.destroy();
      closeQuietly(fd);
      if (!disposed) await s.dispose();
    }
  });
}

test('idleTimeout and finTimeout must be positive numbers of milliseconds', async () => {
  const s = await session();
  try {
    for (const [name, value] of [
      ['idleTimeout', 0], ['idleTimeout', -1], ['idleTimeout', Infinity], ['idleTimeout', NaN],
      ['idleTimeout', '1000'], ['finTimeout', 0], ['finTimeout', 2 ** 31], ['finTimeout', null],
    ]) {
      assert.throws(() => spliceTo(s.socket, 1, { [name]: value }),
        (err) => err.code === 'ERR_TLS_SPLICE_INVALID_ARG' && err.message.includes(name),
        `${name}: ${String(value)}`);
    }
    // Fractions are whole milliseconds, rounded up: accepted.
    const [fd, testFd] = socketPair();
    const handle = spliceTo(s.socket, fd, { idleTimeout: 0.5, finTimeout: 1500.2 });
    await handle.stop();
    closeQuietly(fd);
    closeQuietly(testFd);
  } finally {
    await s.dispose();
  }
});
