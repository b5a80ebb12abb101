// Flow control and lifecycle of a native splice: backpressure from a slow sink with bounded
// memory, half-close in both directions, graceful stop and abort mid-stream (every byte accounted
// for), 200 concurrent splices, the JS fallback engine, and option errors.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { spliceTo, pipeToNative, SpliceError } from '../dist/index.js';
import { FIXTURES } from './helpers/peers.mjs';
import { PrngStream, sha256 } from './helpers/data.mjs';
import { ourClient, socketPair, userSide, withTimeout } from './helpers/splice-env.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const children = new Set();
after(() => { for (const child of children) child.kill('SIGKILL'); });

// The stream peer in a child process; resolves with its port and a reader of its report lines.
async function streamPeer(options) {
  const child = spawn(process.execPath, [path.join(here, 'helpers', 'stream-peer.mjs'),
    JSON.stringify(options)], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const lines = [];
  const waiters = [];
  let buffered = '';
  child.stdout.on('data', (chunk) => {
    buffered += chunk;
    let i;
    while ((i = buffered.indexOf('\n')) >= 0) {
      lines.push(buffered.slice(0, i));
      buffered = buffered.slice(i + 1);
      for (const w of waiters.splice(0)) w();
    }
  });
  const nextLine = async (prefix, timeout = 30000) => {
    const deadline = Date.now() + timeout;
    for (;;) {
      const index = lines.findIndex((l) => l.startsWith(prefix));
      if (index >= 0) return lines.splice(index, 1)[0];
      if (Date.now() > deadline) throw new Error(`stream peer: no "${prefix}" line`);
      await new Promise((r) => { waiters.push(r); setTimeout(r, 100); });
    }
  };
  const port = Number((await nextLine('LISTENING')).split(' ')[1]);
  return {
    port,
    async received(timeout) {
      const [, bytes, digest] = (await nextLine('RECEIVED', timeout)).split(' ');
      return { bytes: Number(bytes), digest };
    },
    stop() { child.stdin.end(); },
  };
}

// Reads `fd` slowly in a child process (helpers/slow-reader.mjs), hashing as it goes; the fd is
// closed here once the child has it. Resolves with what the child received.
function slowHashingReader(fd) {
  const child = spawn(process.execPath, [path.join(here, 'helpers', 'slow-reader.mjs')],
    { stdio: ['ignore', 'pipe', 'inherit', fd] });
  children.add(child);
  fs.closeSync(fd);
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s) => { out += s; });
  const done = new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      children.delete(child);
      const [word, bytes, digest] = out.trim().split(' ');
      if (word === 'RECEIVED') resolve({ bytes: Number(bytes), digest });
      else reject(new Error(`slow reader: exit ${code ?? signal}: ${out.trim()}`));
    });
  });
  return { done };
}

function prngDigest(seed, n) {
  const stream = new PrngStream(seed);
  const hash = crypto.createHash('sha256');
  for (let left = n; left > 0;) {
    const take = Math.min(left, 1 << 20);
    hash.update(stream.next(take));
    left -= take;
  }
  return hash.digest('hex');
}

test('backpressure: 256 MiB into a slow sink, memory stays bounded', { timeout: 120000 },
  async () => {
    const size = 256 * 1024 * 1024;
    const peer = await streamPeer({ sendBytes: size, seed: 'backpressure' });
    try {
      const tlsSocket = await ourClient(peer.port);
      const [spliceFd, testFd] = socketPair();
      const reader = slowHashingReader(testFd);
      const handle = spliceTo(tlsSocket, spliceFd, { direction: 'in', engine: 'native' });
      globalThis.gc?.();
      const baseline = process.memoryUsage().rss;
      let peak = baseline;
      const sampler = setInterval(() => {
        peak = Math.max(peak, process.memoryUsage().rss);
      }, 20);
      await handle.start();
      const result = await withTimeout(reader.done, 100000, 'slow reader');
      clearInterval(sampler);
      const end = await handle.closed;
      assert.equal(end.reason, 'end', end.error?.message);
      assert.equal(result.bytes, size);
      assert.equal(result.digest, prngDigest('backpressure', size));
      // The splice's buffers are fixed (well under 1 MiB); nothing may scale with 256 MiB. The
      // reader is another process, so this process holds only the splice (measured: under 2 MiB
      // of growth on Node 20, 24 and 26).
      const grew = peak - baseline;
      assert.ok(grew < 16 * 1024 * 1024, `RSS grew by ${(grew / 1048576).toFixed(1)} MiB`);
      console.log(`# RSS grew by ${(grew / 1048576).toFixed(1)} MiB`);
    } finally {
      peer.stop();
    }
  });

test('half-close: the peer closes first, our direction carries on', { timeout: 60000 },
  async () => {
    const size = 16 * 1024 * 1024;
    const peer = await streamPeer({ sendBytes: size, seed: 'peer-first' });
    try {
      const tlsSocket = await ourClient(peer.port);
      const [spliceFd, testFd] = socketPair();
      const user = userSide(testFd);
      const handle = spliceTo(tlsSocket, spliceFd, { engine: 'native', autoClose: true });
      const ended = new Promise((resolve) => handle.once('end', resolve));
      await handle.start();
      // The peer's whole stream and its close reach the user side first...
      await user.waitForEnd(30000);
      await withTimeout(ended, 5000, "the handle's 'end' event");
      assert.equal(sha256(user.received), prngDigest('peer-first', size));
      // ...and only then do we send: the peer still reads after its close_notify.
      const ours = new PrngStream('ours-after-peer-close').next(size);
      await user.write(ours);
      user.socket.end();
      const [report, end] = await Promise.all([peer.received(), handle.closed]);
      assert.equal(end.reason, 'end', end.error?.message);
      assert.equal(end.closeNotifyReceived, true);
      assert.equal(report.bytes, size);
      assert.equal(report.digest, sha256(ours));
    } finally {
      peer.stop();
    }
  });

test('half-close: we close first, the peer keeps sending', { timeout: 60000 }, async () => {
  const size = 32 * 1024 * 1024;
  const peer = await streamPeer({ sendBytes: size, seed: 'ours-first' });
  try {
    const tlsSocket = await ourClient(peer.port);
    const [spliceFd, testFd] = socketPair();
    const user = userSide(testFd);
    const handle = spliceTo(tlsSocket, spliceFd, { engine: 'native', autoClose: true });
    await handle.start();
    const ours = Buffer.from('a short request, then EOF\n');
    await user.write(ours);
    user.socket.end();  // our close_notify goes out while the peer's 32 MiB are still coming
    const report = await peer.received();
    assert.equal(report.digest, sha256(ours));
    await user.waitForEnd(30000);
    const end = await handle.closed;
    assert.equal(end.reason, 'end', end.error?.message);
    assert.equal(end.closeNotifySent, true);
    assert.equal(user.length, size);
    assert.equal(sha256(user.received), prngDigest('ours-first', size));
  } finally {
    peer.stop();
  }
});

for (const graceful of [true, false]) {
  test(`stop({ graceful: ${graceful} }) mid-stream: every byte is accounted for`,
    { timeout: 60000 }, async () => {
      const size = 64 * 1024 * 1024;
      const peer = await streamPeer({ sendBytes: size, seed: `stop-${graceful}` });
      let user;
      try {
        const tlsSocket = await ourClient(peer.port);
        const [spliceFd, testFd] = socketPair();
        user = userSide(testFd);
        const handle = spliceTo(tlsSocket, spliceFd, { engine: 'native' });
        await handle.start();
        const ours = new PrngStream(`stop-${graceful}/ours`).next(size);
        void user.write(ours).catch(() => {});
        await user.waitFor(8 * 1024 * 1024);
        const end = await withTimeout(handle.stop({ graceful }), 20000, 'stop');
        assert.equal(end.reason, graceful ? 'stopped' : 'aborted');
        assert.equal(end.closeNotifySent, graceful);
        // TLS -> fd: what reached the user side is exactly bytesIn, a prefix of the stream.
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(user.length, end.stats.bytesIn);
        assert.equal(sha256(user.received), prngDigest(`stop-${graceful}`, user.length));
        // fd -> TLS: after a graceful stop the peer got exactly bytesOut bytes, a prefix of ours,
        // and nothing the splice had read was left behind. An abort closes a socket that still
        // has the peer's bytes unread, which makes the kernel send a reset, and a reset may
        // discard our last segments at the peer: there it gets a prefix of at most bytesOut.
        const report = await peer.received(20000).catch(() => null);
        if (graceful) {
          assert.ok(report, 'a graceful stop ends with close_notify, so the peer reports');
          assert.equal(end.undeliveredOut, 0);
          assert.equal(end.undeliveredIn, 0);
          assert.equal(report.bytes, end.stats.bytesOut);
        }
        if (report) {
          assert.ok(report.bytes <= end.stats.bytesOut, `${report.bytes} > ${end.stats.bytesOut}`);
          assert.equal(report.digest, sha256(ours.subarray(0, report.bytes)));
        }
        // stop() again: the same result, nothing else happens.
        assert.equal(await handle.stop({ graceful: !graceful }), end);
      } finally {
        user?.socket.destroy();
        peer.stop();
      }
    });
}

test('200 concurrent splices, each byte-exact both ways', { timeout: 120000 }, async () => {
  const count = 200;
  const each = 256 * 1024;
  const peer = await streamPeer({ sendBytes: each, seed: 'many' });
  const expectedDown = prngDigest('many', each);
  try {
    const run = async (i) => {
      const tlsSocket = await ourClient(peer.port);
      const [spliceFd, testFd] = socketPair();
      const user = userSide(testFd);
      const handle = spliceTo(tlsSocket, spliceFd, { engine: 'native', autoClose: true });
      await handle.start();
      const ours = new PrngStream(`many/${i}`).next(each);
      await user.write(ours);
      await user.waitFor(each);
      user.socket.end();
      const end = await handle.closed;
      assert.equal(end.reason, 'end', end.error?.message);
      assert.equal(sha256(user.received), expectedDown);
      return sha256(ours);
    };
    const sent = await withTimeout(Promise.all(Array.from({ length: count }, (_, i) => run(i))),
      100000, '200 splices');
    const reports = [];
    for (let i = 0; i < count; i++) reports.push(await peer.received());
    assert.deepEqual(reports.map((r) => r.digest).sort(), [...sent].sort());
    assert.ok(reports.every((r) => r.bytes === each));
  } finally {
    peer.stop();
  }
});

test('a socket not created by tls-splice: auto falls back to the JS engine, native refuses',
  { timeout: 60000 }, async () => {
    const size = 4 * 1024 * 1024;
    const peer = await streamPeer({ sendBytes: size, seed: 'plain' });
    try {
      const connectPlain = () => new Promise((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: peer.port, ca: fs.readFileSync(FIXTURES.ca),
          servername: 'localhost' }, () => resolve(s));
        s.once('error', reject);
      });
      const refused = await connectPlain();
      const [fdA] = socketPair();
      const native = spliceTo(refused, fdA, { engine: 'native' });
      await assert.rejects(native.start(), { code: 'ERR_TLS_SPLICE_NOT_TAPPED' });
      assert.equal((await native.closed).error.code, 'ERR_TLS_SPLICE_NOT_TAPPED');
      // Refused before anything irreversible: the socket still works.
      const chunk = await new Promise((resolve) => refused.once('data', resolve));
      assert.ok(chunk.length > 0);
      refused.destroy();

      const plain = await connectPlain();
      const [spliceFd, testFd] = socketPair();
      const user = userSide(testFd);
      const handle = spliceTo(plain, spliceFd, { autoClose: true });
      await handle.start();
      assert.equal(handle.engine, 'js');
      assert.equal(handle.fallbackReason.code, 'ERR_TLS_SPLICE_NOT_TAPPED');
      const ours = new PrngStream('plain/ours').next(size);
      await user.write(ours);
      await user.waitForEnd(30000);
      user.socket.end();
      const [report, end] = await Promise.all([peer.received(), handle.closed]);
      assert.equal(end.reason, 'end', end.error?.message);
      assert.equal(end.engine, 'js');
      assert.equal(sha256(user.received), prngDigest('plain', size));
      assert.equal(report.digest, sha256(ours));
    } finally {
      peer.stop();
    }
  });

test("direction 'out': data from the peer ends the splice with ERR_TLS_SPLICE_UNEXPECTED_DATA",
  { timeout: 30000 }, async () => {
    const peer = await streamPeer({ sendBytes: 1024 * 1024, seed: 'unexpected' });
    try {
      const [spliceFd] = socketPair();
      await assert.rejects(
        pipeToNative(await ourClient(peer.port), spliceFd, { direction: 'out', engine: 'native' }),
        { code: 'ERR_TLS_SPLICE_UNEXPECTED_DATA' });
    } finally {
      peer.stop();
    }
  });

test('option errors have codes and touch nothing', async () => {
  const [fd] = socketPair();
  const fake = new tls.TLSSocket(new net.Socket());
  const cases = [
    [{ direction: 'sideways' }, 'ERR_TLS_SPLICE_INVALID_ARG'],
    [{ engine: 'fast' }, 'ERR_TLS_SPLICE_INVALID_ARG'],
    [{ framing: 'bytes' }, 'ERR_TLS_SPLICE_INVALID_ARG'],
    [{ packetInfo: true }, 'ERR_TLS_SPLICE_INVALID_ARG'],
    [{ framing: 'ip', maxPacketSize: 70000 }, 'ERR_TLS_SPLICE_INVALID_ARG'],
    [{ head: 'text' }, 'ERR_TLS_SPLICE_INVALID_ARG'],
    [{ direction: 'out', head: Buffer.from('x') }, 'ERR_TLS_SPLICE_INVALID_ARG'],
    [{ signal: {} }, 'ERR_TLS_SPLICE_INVALID_ARG'],
  ];
  for (const [options, code] of cases) {
    assert.throws(() => spliceTo(fake, fd, options), (err) => {
      assert.ok(err instanceof SpliceError);
      assert.equal(err.code, code, JSON.stringify(options));
      return true;
    });
  }
  assert.throws(() => spliceTo(fake, -1), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  assert.throws(() => spliceTo(fake, 'fd'), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  assert.throws(() => spliceTo(fake, { readFd: fd }), { code: 'ERR_TLS_SPLICE_INVALID_ARG' });
  assert.throws(() => spliceTo(fake, 987654), { code: 'EBADF' });
  fake.destroy();
});
