// The engine contract (docs/ENGINE-CONTRACT.md), run against both engines: every case below runs
// the same steps with engine 'native' and engine 'js' and expects the same outcome. The peer is
// plain node:tls over a TCP connection the test controls (helpers/bridged-peer.mjs), so that it can
// end with close_notify or cut TCP without one; our side is a tls-splice connect() socket.
//
// What is checked: the end flags (closeNotifyReceived / closeNotifySent /
// peerEofWithoutCloseNotify), the bytes in both directions (length and SHA-256), EOF at the target
// after everything was delivered, O_NONBLOCK on the user's fds afterwards, a graceful stop that
// hands the target back without ending it, onTruncation, the undelivered counts, and that a
// number the user closed and the kernel handed out again is never written.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { before, test } from 'node:test';
import tls from 'node:tls';

import { spliceTo } from '../esm/index.mjs';
import { binding } from '../dist/binding.js';
import { bridgedServer } from './helpers/bridged-peer.mjs';
import { FIXTURES, opensslClient } from './helpers/peers.mjs';
import { prngBytes, sha256 } from './helpers/data.mjs';
import { assertFdsBack, fdCount } from './helpers/resources.mjs';
import {
  ourClient, ourServer, pipe, socketPair, userSide, withTimeout,
} from './helpers/splice-env.mjs';

const ENGINES = ['native', 'js'];
const VERSIONS = ['TLSv1.3', 'TLSv1.2'];
const IN_LENGTH = 256 * 1024;
const OUT_LENGTH = 192 * 1024;
const WAIT = 20000;

// O_NONBLOCK of an fd's open file description, left as it was.
function nonBlocking(fd) {
  const was = binding.setNonBlocking(fd, true);
  if (!was) binding.setNonBlocking(fd, false);
  return was;
}

function closeQuietly(fd) {
  try {
    fs.closeSync(fd);
  } catch {
    // Closed by the test already.
  }
}

async function until(condition, what, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

// A tls-splice client connected to a bridged node:tls peer, handshake done on both sides.
async function session(version) {
  const server = await bridgedServer({ minVersion: version, maxVersion: version });
  const socket = await ourClient(server.port, { minVersion: version, maxVersion: version });
  const peer = await server.nextPeer();
  await withTimeout(peer.secure, WAIT, "the peer's handshake");
  return {
    server, socket, peer,
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

function assertEnd(end, expected) {
  const { error, stats, ...flags } = end;
  const actual = Object.fromEntries(Object.keys(expected).map((key) => [key, flags[key]]));
  assert.deepEqual(actual, expected,
    `end info: ${JSON.stringify(flags)}${error ? ` error ${error.code}: ${error.message}` : ''}`);
}

function assertBytes(got, want, what) {
  assert.equal(got.length, want.length, `${what}: length`);
  assert.equal(sha256(got), sha256(want), `${what}: SHA-256`);
}

// The native engine's I/O threads and their fds start with the first native splice and stay for
// the process: start them before any fd count is taken.
before(async () => {
  const s = await session('TLSv1.3');
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
  for (const version of VERSIONS) {
    test(`${engine} ${version}: close_notify both ways: bytes both ways, EOF at the target after ` +
         'everything, clean end flags, O_NONBLOCK restored, no fd kept', { timeout: 60000 }, async () => {
      const baseline = fdCount();
      const s = await session(version);
      const [fd, testFd] = socketPair();
      const user = userSide(testFd);
      let disposed = false;
      try {
        assert.equal(nonBlocking(fd), false);
        const handle = await started(s.socket, fd, { engine });
        const IN = prngBytes(`conformance in ${engine} ${version}`, IN_LENGTH);
        const OUT = prngBytes(`conformance out ${engine} ${version}`, OUT_LENGTH);
        await s.peer.send(IN);
        s.peer.close();
        await user.write(OUT);
        user.socket.end();
        await withTimeout(user.waitForEnd(), WAIT, 'EOF at the target');
        assertBytes(user.received, IN, 'peer -> target');
        await withTimeout(s.peer.ended, WAIT, 'our close_notify at the peer');
        assertBytes(s.peer.received, OUT, 'target -> peer');
        const end = await withTimeout(handle.closed, WAIT, 'closed');
        assertEnd(end, {
          reason: 'end', engine, closeNotifyReceived: true, closeNotifySent: true,
          peerEofWithoutCloseNotify: false, undeliveredIn: 0, undeliveredOut: 0,
        });
        assert.equal(end.error, undefined);
        assert.equal(end.stats.bytesIn, IN.length);
        assert.equal(end.stats.bytesOut, OUT.length);
        assert.equal(nonBlocking(fd), false, "O_NONBLOCK left set on the user's fd");
        // Nothing of the engine's is left once `closed` settled and the user closed theirs.
        fs.closeSync(fd);
        user.socket.destroy();
        await s.dispose();
        disposed = true;
        await assertFdsBack(baseline, `${engine} after the splice`);
      } finally {
        if (!disposed) {
          closeQuietly(fd);
          user.socket.destroy();
          await s.dispose();
        }
      }
    });

    test(`${engine} ${version}: TCP FIN without close_notify: EOF at the target after ` +
         'everything, peerEofWithoutCloseNotify', { timeout: 60000 }, async () => {
      const s = await session(version);
      const [fd, testFd] = socketPair();
      const user = userSide(testFd);
      try {
        const handle = await started(s.socket, fd, { engine, onTruncation: 'end' });
        const IN = prngBytes(`truncated in ${engine} ${version}`, IN_LENGTH);
        const OUT = prngBytes(`truncated out ${engine} ${version}`, OUT_LENGTH);
        await s.peer.send(IN);
        await s.peer.truncate();
        // onTruncation 'end': the end passes on as after a close_notify.
        await withTimeout(user.waitForEnd(), WAIT, 'EOF at the target');
        assertBytes(user.received, IN, 'peer -> target');
        await user.write(OUT);
        user.socket.end();
        await withTimeout(s.peer.ended, WAIT, 'our close_notify at the peer');
        assertBytes(s.peer.received, OUT, 'target -> peer');
        const end = await withTimeout(handle.closed, WAIT, 'closed');
        assertEnd(end, {
          reason: 'end', closeNotifyReceived: false, closeNotifySent: true,
          peerEofWithoutCloseNotify: true, undeliveredIn: 0, undeliveredOut: 0,
        });
        assert.equal(end.error, undefined);
        assert.equal(nonBlocking(fd), false, "O_NONBLOCK left set on the user's fd");
      } finally {
        closeQuietly(fd);
        user.socket.destroy();
        await s.dispose();
      }
    });
  }

  test(`${engine}: another TLS stack cut off: openssl s_client killed after sending, EOF at the ` +
       'target after everything, peerEofWithoutCloseNotify', { timeout: 60000 }, async () => {
    // TLS 1.2: no post-handshake records from our side that s_client might leave unread (a close
    // with unread data would be a reset, not the FIN this case is about).
    const ours = await ourServer({ minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
    const { peer } = await opensslClient({ port: ours.port, version: 'TLSv1.2' });
    const [fd, testFd] = socketPair();
    const user = userSide(testFd);
    try {
      const socket = await ours.nextSocket();
      const handle = await started(socket, fd, { engine, onTruncation: 'end' });
      const IN = prngBytes(`s_client in ${engine}`, 64 * 1024);
      await peer.sendAll(IN);
      await withTimeout(user.waitFor(IN.length), WAIT, "s_client's bytes at the target");
      await peer.stop();  // SIGKILL: the kernel closes its socket with a FIN, no close_notify
      await withTimeout(user.waitForEnd(), WAIT, 'EOF at the target');
      assertBytes(user.received, IN, 'peer -> target');
      user.socket.end();
      const end = await withTimeout(handle.closed, WAIT, 'closed');
      assertEnd(end, {
        reason: 'end', closeNotifyReceived: false, peerEofWithoutCloseNotify: true,
        undeliveredIn: 0,
      });
      assert.equal(end.error, undefined);
      assert.equal(nonBlocking(fd), false, "O_NONBLOCK left set on the user's fd");
    } finally {
      await peer.stop();
      closeQuietly(fd);
      user.socket.destroy();
      await ours.close();
    }
  });

  test(`${engine}: onTruncation 'reset': a TCP target gets a reset, not an EOF, after everything ` +
       'the peer sent', { timeout: 60000 }, async () => {
    const s = await session('TLSv1.3');
    const backendServer = net.createServer();
    await new Promise((resolve) => backendServer.listen(0, '127.0.0.1', resolve));
    const backend = net.connect(backendServer.address().port, '127.0.0.1');
    const [far] = await once(backendServer, 'connection');
    await once(backend, 'connect');
    const chunks = [];
    let farLength = 0;
    far.on('data', (chunk) => {
      chunks.push(chunk);
      farLength += chunk.length;
    });
    const farOutcome = new Promise((resolve) => {
      far.once('end', () => resolve('EOF'));
      far.once('error', (err) => resolve(err.code));
    });
    try {
      const handle = await started(s.socket, backend, { engine, onTruncation: 'reset' });
      const IN = prngBytes(`reset in ${engine}`, IN_LENGTH);
      await s.peer.send(IN);
      await until(() => farLength >= IN.length, 'the peer\'s bytes at the far end');
      await s.peer.truncate();
      const end = await withTimeout(handle.closed, WAIT, 'closed');
      assertEnd(end, {
        reason: 'end', closeNotifyReceived: false, peerEofWithoutCloseNotify: true,
        undeliveredIn: 0,
      });
      assert.equal(end.error, undefined);
      assert.equal(await withTimeout(farOutcome, WAIT, 'the far end\'s outcome'), 'ECONNRESET');
      assertBytes(Buffer.concat(chunks), IN, 'peer -> far end');
    } finally {
      backend.destroy();
      far.destroy();
      backendServer.close();
      await s.dispose();
    }
  });

  test(`${engine}: TCP FIN inside a record: ERR_TLS_SPLICE_TRUNCATED_RECORD after everything ` +
       'before it reached the target', { timeout: 60000 }, async () => {
    const s = await session('TLSv1.3');
    const [fd, testFd] = socketPair();
    const user = userSide(testFd);
    try {
      const handle = await started(s.socket, fd, { engine });
      const IN = prngBytes(`partial in ${engine}`, IN_LENGTH);
      await s.peer.send(IN);
      await withTimeout(user.waitFor(IN.length), WAIT, "the peer's bytes at the target");
      // The first 15 bytes of an application_data record announcing 100: then TCP ends.
      const partial = Buffer.concat([Buffer.from([23, 3, 3, 0, 100]), Buffer.alloc(10)]);
      await new Promise((resolve) => s.peer.raw.write(partial, resolve));
      await s.peer.truncate();
      const end = await withTimeout(handle.closed, WAIT, 'closed');
      assert.equal(end.error?.code, 'ERR_TLS_SPLICE_TRUNCATED_RECORD');
      assertEnd(end, {
        reason: 'error', closeNotifyReceived: false, peerEofWithoutCloseNotify: false,
        undeliveredIn: 0, unreadCiphertext: partial.length,
      });
      assertBytes(user.received, IN, 'peer -> target');
      assert.equal(nonBlocking(fd), false, "O_NONBLOCK left set on the user's fd");
    } finally {
      closeQuietly(fd);
      user.socket.destroy();
      await s.dispose();
    }
  });

  test(`${engine}: onTruncation 'reset' with a TCP fd target: the reset goes out when the user ` +
       'closes the last descriptor', { timeout: 60000 }, async () => {
    const s = await session('TLSv1.3');
    const backendServer = net.createServer();
    await new Promise((resolve) => backendServer.listen(0, '127.0.0.1', resolve));
    const backend = net.connect(backendServer.address().port, '127.0.0.1');
    const [far] = await once(backendServer, 'connection');
    await once(backend, 'connect');
    // The user's fd: a duplicate of the connection's, with Node's socket gone.
    const fd = binding.dupFd(backend._handle.fd);
    backend.destroy();
    // Node made the description non-blocking; that is what the splice must leave.
    const originallyNonBlocking = nonBlocking(fd);
    const chunks = [];
    let farLength = 0;
    far.on('data', (chunk) => {
      chunks.push(chunk);
      farLength += chunk.length;
    });
    const farOutcome = new Promise((resolve) => {
      far.once('end', () => resolve('EOF'));
      far.once('error', (err) => resolve(err.code));
    });
    try {
      const handle = await started(s.socket, fd, { engine, onTruncation: 'reset' });
      const IN = prngBytes(`reset fd in ${engine}`, IN_LENGTH);
      await s.peer.send(IN);
      await until(() => farLength >= IN.length, 'the peer\'s bytes at the far end');
      await s.peer.truncate();
      const end = await withTimeout(handle.closed, WAIT, 'closed');
      assertEnd(end, {
        reason: 'end', closeNotifyReceived: false, peerEofWithoutCloseNotify: true,
        undeliveredIn: 0,
      });
      assert.equal(nonBlocking(fd), originallyNonBlocking, "O_NONBLOCK not as it was");
      fs.closeSync(fd);
      assert.equal(await withTimeout(farOutcome, WAIT, 'the far end\'s outcome'), 'ECONNRESET');
      assertBytes(Buffer.concat(chunks), IN, 'peer -> far end');
    } finally {
      closeQuietly(fd);
      far.destroy();
      backendServer.close();
      await s.dispose();
    }
  });

  test(`${engine}: graceful stop delivers what was read, sends close_notify and hands the ` +
       'target back without ending it', { timeout: 60000 }, async () => {
    const s = await session('TLSv1.3');
    const [fd, testFd] = socketPair();
    const user = userSide(testFd);
    try {
      const handle = await started(s.socket, fd, { engine });
      const IN = prngBytes(`stop in ${engine}`, IN_LENGTH);
      await s.peer.send(IN);
      await withTimeout(user.waitFor(IN.length), WAIT, "the peer's bytes at the target");
      // The peer answers our close_notify with its own, as Node's default does.
      void s.peer.ended.then(() => s.peer.close());
      const end = await withTimeout(handle.stop(), WAIT, 'stop');
      assertEnd(end, {
        reason: 'stopped', closeNotifySent: true, closeNotifyReceived: false,
        peerEofWithoutCloseNotify: false, undeliveredIn: 0, undeliveredOut: 0,
      });
      assert.equal(end.error, undefined);
      assert.equal(end.stats.bytesIn, IN.length);
      assertBytes(user.received, IN, 'peer -> target');
      await withTimeout(s.peer.ended, WAIT, 'our close_notify at the peer');
      // Not ended: the user's fd still writes into the socket, and its far end reads that before
      // any EOF (after a shutdown(SHUT_WR) the write would fail with EPIPE).
      assert.equal(nonBlocking(fd), false, "O_NONBLOCK left set on the user's fd");
      const marker = Buffer.from('the target is still the user\'s');
      assert.equal(fs.writeSync(fd, marker), marker.length);
      await withTimeout(user.waitFor(IN.length + marker.length), WAIT, 'the marker');
      assert.equal(user.ended, false, 'the target was ended by a graceful stop');
      assertBytes(user.received, Buffer.concat([IN, marker]), 'target after the stop');
    } finally {
      closeQuietly(fd);
      user.socket.destroy();
      await s.dispose();
    }
  });

  test(`${engine}: graceful stop while the peer keeps sending: the peer reads our close_notify ` +
       'and the connection closes without a reset', { timeout: 60000 }, async () => {
    const s = await session('TLSv1.3');
    const [fd, testFd] = socketPair();
    const user = userSide(testFd);
    let peerEnded = false;
    let peerError = null;
    s.peer.tls.on('error', (err) => { peerError = err; });
    s.peer.raw.on('error', (err) => { peerError ??= err; });
    const rawClosed = once(s.peer.raw, 'close');
    void s.peer.ended.then(() => { peerEnded = true; });
    try {
      const handle = await started(s.socket, fd, { engine });
      // The peer sends until it reads our close_notify, then closes too.
      const chunk = prngBytes(`linger ${engine}`, 64 * 1024);
      // It keeps our receive queue full: closing with it unread would make our kernel send a reset.
      const sending = (async () => {
        while (!peerEnded && !peerError) {
          if (!s.peer.tls.write(chunk)) {
            await Promise.race([once(s.peer.tls, 'drain'), s.peer.ended, once(s.peer.tls, 'close')]);
          }
        }
        if (peerEnded) s.peer.close();
      })();
      await withTimeout(user.waitFor(4 * chunk.length), WAIT, "the peer's bytes at the target");
      const end = await withTimeout(handle.stop(), WAIT, 'stop');
      await withTimeout(sending, WAIT, 'the peer to stop sending');
      // The connection closes cleanly on both sides: no reset, before or after our close_notify.
      await withTimeout(rawClosed, WAIT, "the peer's TCP close");
      assert.equal(peerError, null, `the peer saw ${peerError?.code}`);
      assert.equal(peerEnded, true);
      assertEnd(end, { reason: 'stopped', closeNotifySent: true, undeliveredIn: 0 });
      assert.equal(end.error, undefined);
    } finally {
      closeQuietly(fd);
      user.socket.destroy();
      await s.dispose();
    }
  });

  test(`${engine}: pipes as readFd and writeFd: bytes both ways, O_NONBLOCK restored on both, ` +
       'the engine keeps no write end open', { timeout: 60000 }, async () => {
    const s = await session('TLSv1.3');
    const [inRead, inWrite] = pipe();    // the target's readFd is inRead; the test writes inWrite
    const [outRead, outWrite] = pipe();  // the target's writeFd is outWrite; the test reads outRead
    const reader = new net.Socket({ fd: outRead, readable: true, writable: false });
    const writer = new net.Socket({ fd: inWrite, readable: false, writable: true });
    const got = [];
    reader.on('data', (chunk) => got.push(chunk));
    const readerEnded = once(reader, 'end');
    try {
      assert.equal(nonBlocking(inRead), false);
      assert.equal(nonBlocking(outWrite), false);
      const handle = await started(s.socket, { readFd: inRead, writeFd: outWrite }, { engine });
      const IN = prngBytes(`pipes in ${engine}`, IN_LENGTH);
      const OUT = prngBytes(`pipes out ${engine}`, OUT_LENGTH);
      await s.peer.send(IN);
      s.peer.close();
      writer.end(OUT, () => writer.destroy());
      await withTimeout(s.peer.ended, WAIT, 'our close_notify at the peer');
      assertBytes(s.peer.received, OUT, 'target -> peer');
      const end = await withTimeout(handle.closed, WAIT, 'closed');
      assertEnd(end, {
        reason: 'end', closeNotifyReceived: true, closeNotifySent: true,
        peerEofWithoutCloseNotify: false, undeliveredIn: 0, undeliveredOut: 0,
      });
      assert.equal(nonBlocking(inRead), false, 'O_NONBLOCK left set on readFd');
      assert.equal(nonBlocking(outWrite), false, 'O_NONBLOCK left set on writeFd');
      // The user's write end is the last one: once it is closed, the reader sees EOF.
      fs.closeSync(outWrite);
      await withTimeout(readerEnded, WAIT, 'EOF at the pipe reader');
      assertBytes(Buffer.concat(got), IN, 'peer -> target');
    } finally {
      closeQuietly(inRead);
      closeQuietly(outWrite);
      reader.destroy();
      writer.destroy();
      await s.dispose();
    }
  });

  test(`${engine}: readFd and writeFd on one open file description: O_NONBLOCK restored`,
    { timeout: 60000 }, async () => {
      const s = await session('TLSv1.3');
      const [fd, testFd] = socketPair();
      const writeFd = binding.dupFd(fd);
      const user = userSide(testFd);
      try {
        assert.equal(nonBlocking(fd), false);
        const handle = await started(s.socket, { readFd: fd, writeFd }, { engine });
        const IN = prngBytes(`shared in ${engine}`, IN_LENGTH);
        const OUT = prngBytes(`shared out ${engine}`, OUT_LENGTH);
        await s.peer.send(IN);
        s.peer.close();
        await user.write(OUT);
        user.socket.end();
        await withTimeout(user.waitForEnd(), WAIT, 'EOF at the target');
        assertBytes(user.received, IN, 'peer -> target');
        await withTimeout(s.peer.ended, WAIT, 'our close_notify at the peer');
        assertBytes(s.peer.received, OUT, 'target -> peer');
        const end = await withTimeout(handle.closed, WAIT, 'closed');
        assertEnd(end, { reason: 'end', closeNotifyReceived: true, closeNotifySent: true });
        assert.equal(nonBlocking(fd), false, 'O_NONBLOCK left set on the open file description');
      } finally {
        closeQuietly(fd);
        closeQuietly(writeFd);
        user.socket.destroy();
        await s.dispose();
      }
    });

  test(`${engine}: a write fd number the user closed and the kernel handed out again is never ` +
       'written', { timeout: 60000 }, async () => {
    const s = await session('TLSv1.3');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-splice-conformance-'));
    const original = path.join(dir, 'original');
    const other = path.join(dir, 'other');
    const fd = fs.openSync(original, 'w');
    let reused = -1;
    try {
      const handle = await started(s.socket, { writeFd: fd }, { engine, direction: 'in' });
      const first = prngBytes(`reuse first ${engine}`, 64 * 1024);
      const second = prngBytes(`reuse second ${engine}`, 64 * 1024);
      await s.peer.send(first);
      await until(() => fs.statSync(original).size >= first.length, 'the first bytes in the file');
      fs.closeSync(fd);
      // Lower free numbers are taken first; keep opening until the number comes back.
      const spare = [];
      for (let i = 0; i < 256 && reused < 0; i++) {
        const next = fs.openSync(other, 'a');
        if (next === fd) reused = next; else spare.push(next);
      }
      for (const f of spare) fs.closeSync(f);
      assert.equal(reused, fd, 'the kernel did not hand the number out again');
      await s.peer.send(second);
      s.peer.close();
      const end = await withTimeout(handle.closed, WAIT, 'closed');
      assertEnd(end, { reason: 'end', closeNotifyReceived: true, undeliveredIn: 0 });
      assert.equal(end.stats.bytesIn, first.length + second.length);
      assertBytes(fs.readFileSync(original), Buffer.concat([first, second]), 'the original file');
      assert.equal(fs.statSync(other).size, 0, 'bytes went to the reused number');
    } finally {
      if (reused >= 0) closeQuietly(reused); else closeQuietly(fd);
      fs.rmSync(dir, { recursive: true, force: true });
      await s.dispose();
    }
  });

  test(`${engine}: abort: the target got a prefix of the peer's stream, at least stats.bytesIn ` +
       'and at most bytesIn + undeliveredIn bytes', { timeout: 60000 }, async () => {
    const s = await session('TLSv1.3');
    const [fd, testFd] = socketPair();
    // The test's end does not read until after the abort: the engine holds what does not fit.
    const far = new net.Socket({ fd: testFd, readable: true, writable: true });
    far.pause();
    const IN = prngBytes(`abort in ${engine}`, 4 * 1024 * 1024);
    try {
      const handle = await started(s.socket, fd, { engine });
      void s.peer.send(IN).catch(() => {});
      await until(() => handle.stats().bytesIn > 0, 'bytes at the target');
      const end = await withTimeout(handle.stop({ graceful: false }), WAIT, 'abort');
      assertEnd(end, { reason: 'aborted', closeNotifySent: false });
      assert.equal(end.error, undefined);
      closeQuietly(fd);
      const chunks = [];
      far.on('data', (chunk) => chunks.push(chunk));
      const ended = once(far, 'end');
      far.resume();
      await withTimeout(ended, WAIT, 'EOF at the far end');
      // bytesIn counts what the target took; a write the kernel took only in part when the
      // engine closed is in undeliveredIn (the JS engine learns nothing of partial writes).
      const got = Buffer.concat(chunks);
      assert.ok(got.length >= end.stats.bytesIn && got.length <= end.stats.bytesIn + end.undeliveredIn,
        `the target got ${got.length} bytes, bytesIn ${end.stats.bytesIn}, ` +
        `undeliveredIn ${end.undeliveredIn}`);
      assertBytes(got, IN.subarray(0, got.length), 'the prefix at the target');
      assert.ok(end.stats.bytesIn + end.undeliveredIn <= IN.length);
    } finally {
      closeQuietly(fd);
      far.destroy();
      await s.dispose();
    }
  });
}

// Not a conformance case (the native engine cannot take an untapped socket): the JS engine's rule
// for an end it cannot classify (docs/ENGINE-CONTRACT.md). Node's TLS layer reads the TCP handle
// of a plain tls.connect() socket directly, so even a real close_notify cannot be seen: it is
// reported as an end without close_notify, never as a clean end.
test("js: a TLSSocket not created by tls-splice: even a close_notify is reported as " +
     'peerEofWithoutCloseNotify, the rule for an end it cannot classify', { timeout: 60000 }, async () => {
  const server = await bridgedServer({ minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
  const socket = tls.connect({
    host: '127.0.0.1', port: server.port, servername: 'localhost', ca: fs.readFileSync(FIXTURES.ca),
  });
  await withTimeout(once(socket, 'secureConnect'), WAIT, 'the handshake');
  const peer = await server.nextPeer();
  await withTimeout(peer.secure, WAIT, "the peer's handshake");
  const [fd, testFd] = socketPair();
  const user = userSide(testFd);
  try {
    const handle = await started(socket, fd, { engine: 'js', onTruncation: 'end' });
    const IN = prngBytes('untapped in', IN_LENGTH);
    await peer.send(IN);
    peer.close();
    await withTimeout(user.waitForEnd(), WAIT, 'EOF at the target');
    assertBytes(user.received, IN, 'peer -> target');
    user.socket.end();
    await withTimeout(peer.ended, WAIT, 'our close_notify at the peer');
    const end = await withTimeout(handle.closed, WAIT, 'closed');
    assertEnd(end, {
      reason: 'end', closeNotifyReceived: false, closeNotifySent: true,
      peerEofWithoutCloseNotify: true,
    });
    assert.equal(nonBlocking(fd), false, "O_NONBLOCK left set on the user's fd");
  } finally {
    closeQuietly(fd);
    user.socket.destroy();
    socket.destroy();
    await server.close();
  }
});
