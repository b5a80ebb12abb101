// Faults around a natively spliced session (issue 6): the peer resets, the sink goes away, the
// user closes their fd, stop() races the end, handles are dropped, processes exit with splices
// running, and a thousand splices are stopped at random moments.
//
// After each: every byte the splice accepted is accounted for — it reached the other side (the
// received bytes are checked to be an exact prefix of the sent stream, by SHA-256), or the end
// info reports it (undeliveredIn, undeliveredOut, unreadCiphertext) — the process is up, and the
// fd count is back at its baseline (RSS bounded where many splices ran).
//
// The user closing their own fd mid-splice does not stop it: the native side holds duplicates of
// every fd, so the splice keeps going, byte-exact, and ends normally when the peers do.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { connect, spliceTo } from '../dist/index.js';
import { binding } from '../dist/binding.js';
import { PrngStream, prngBytes, sha256 } from './helpers/data.mjs';
import { ALERT, ALERT_LEVEL, openPair } from './helpers/hostile-peer.mjs';
import {
  assertFdsBack, assertMemoryBounded, assertRssBounded, fdCount, gc, memorySnapshot, snapshot,
} from './helpers/resources.mjs';
import { withTimeout } from './helpers/scenarios.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHILD = path.join(here, 'helpers', 'fault-child.mjs');
const CA = fs.readFileSync(path.join(here, 'fixtures', 'ca.pem'));
const VERSIONS = ['TLSv1.3', 'TLSv1.2'];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let baseline;


// Writes a seeded stream in chunks until stopped, `total` is reached, or a write fails. `sent`
// counts bytes handed to the socket (an upper bound for anything downstream). stop() does not
// wait: after a fault the last write may never complete (nobody reads that socket any more).
function pump(write, seed, { chunk = 65536, total = Infinity } = {}) {
  const prng = new PrngStream(seed);
  const state = { sent: 0, stopped: false, error: null };
  state.done = (async () => {
    while (!state.stopped && state.sent < total) {
      const buf = prng.next(Math.min(chunk, total - state.sent));
      state.sent += buf.length;
      try {
        await write(buf);
      } catch (err) {
        state.error = err;
        break;
      }
    }
  })();
  state.stop = () => {
    state.stopped = true;
  };
  return state;
}

const isPrefix = (received, seed) => sha256(received) === sha256(prngBytes(seed, received.length));

async function closeCleanly(pair) {
  await pair.hostile.send(pair.hostile.alert(ALERT_LEVEL.warning, ALERT.close_notify));
  pair.sink?.end();
  return pair.ended();
}

before(async () => {
  // Splices start the native I/O threads (up to 4, one more whenever every running one is busy),
  // whose loops keep their fds for good: warm up with 4 at once before taking the baseline.
  const pairs = await Promise.all(Array.from({ length: 4 }, () => openPair()));
  try {
    for (const pair of pairs) {
      await pair.hostile.sendData(Buffer.alloc(1000, 1));
      await pair.sink.waitFor(1000);
    }
    for (const pair of pairs) assert.equal((await closeCleanly(pair)).reason, 'end');
  } finally {
    for (const pair of pairs) await pair.close();
  }
  baseline = await snapshot();
});

// --- the peer resets ------------------------------------------------------------------------

describe('fault: peer RST mid-transfer', () => {
  for (const version of VERSIONS) {
    test(`${version}: ECONNRESET, everything accepted before it accounted for`, { timeout: 30000 }, async () => {
      const pair = await openPair({ version });
      const seedA = `rst-${version}-A`;
      const seedB = `rst-${version}-B`;
      try {
        const { hostile, sink } = pair;
        const a = pump((buf) => hostile.sendData(buf), seedA);
        const b = pump((buf) => sink.write(buf), seedB);
        await sink.waitFor(512 * 1024, 10000);
        await hostile.waitForAppData(512 * 1024, 10000);
        hostile.resetAndDestroy();
        const end = await pair.ended();
        a.stop();
        b.stop();
        assert.equal(end.reason, 'error');
        assert.equal(end.error.code, 'ECONNRESET', end.error.message);
        assert.equal(end.error.alertSent, undefined);
        // peer -> sink: the sink gets exactly what the splice wrote, an exact prefix of the stream.
        await sink.waitFor(end.stats.bytesIn);
        await sleep(20);
        assert.equal(sink.length, end.stats.bytesIn, 'sink length == stats.bytesIn');
        assert.ok(isPrefix(sink.bytes(), seedA), 'sink holds a prefix of the peer stream');
        assert.ok(end.stats.bytesIn + end.undeliveredIn <= a.sent, 'no more than the peer sent');
        // sink -> peer: what the peer opened before it reset is a prefix of the sink stream, and no
        // more than the splice read (sent + reported undelivered).
        assert.equal(hostile.openError, null);
        assert.ok(isPrefix(hostile.appData(), seedB), 'peer holds a prefix of the sink stream');
        assert.ok(hostile.appLength <= end.stats.bytesOut + end.undeliveredOut);
        assert.ok(end.stats.bytesOut + end.undeliveredOut <= b.sent);
      } finally {
        await pair.close();
      }
      await assertFdsBack(baseline.fds, 'after the RST');
    });
  }
});

// --- the sink goes away -----------------------------------------------------------------------

describe('fault: the sink closes mid-transfer', () => {
  for (const version of VERSIONS) {
    test(`${version}: a pipe whose reader exits -> EPIPE; the reader got an exact prefix`, { timeout: 30000 }, async () => {
      const limit = 300_000;
      // `head -c N` reads N bytes from the pipe and exits: the next write is EPIPE.
      const head = spawn('head', ['-c', String(limit)], { stdio: ['pipe', 'pipe', 'ignore'] });
      const out = [];
      head.stdout.on('data', (c) => out.push(c));
      const exited = new Promise((resolve) => head.once('close', resolve));
      // 'close' waits for the splice to close the pipe; 'exit' is head's own end.
      const headGone = new Promise((resolve) => head.once('exit', resolve));
      head.stdin.on('error', () => {});
      const seedA = `epipe-${version}`;
      let pair;
      try {
        pair = await openPair({ version, target: { writeFd: head.stdin._handle.fd }, spliceOptions: { direction: 'in' } });
        // The peer reads nothing and keeps sending until well after the splice failed: a splice
        // that closed at once made the kernel answer those bytes with a reset, the peer's next
        // write failed with ECONNRESET and its socket was destroyed with the alert unread. The
        // splice lingers (at most 2 s) instead; the peer reads within that time.
        pair.hostile.socket.pause();
        // Writes the kernel takes at once complete without a turn of the event loop: yield
        // before each so that the timer below fires.
        const a = pump(async (buf) => {
          await new Promise(setImmediate);
          return pair.hostile.sendData(buf);
        }, seedA);
        await withTimeout(headGone, 15000, 'head exiting');
        await sleep(1000);
        a.stop();
        await withTimeout(a.done, 10000, 'the peer\'s last write');
        assert.equal(a.error, null, 'the peer could send until it stopped');
        pair.hostile.socket.resume();
        // The peer learns that the splice failed, rather than seeing a bare close it could not
        // tell from a truncation: a fatal internal_error (RFC 8446 6.2).
        const alert = await pair.hostile.waitForAlert();
        assert.equal(alert.level, ALERT_LEVEL.fatal);
        assert.equal(alert.description, ALERT.internal_error);
        // Its FIN ends the splice's linger.
        pair.hostile.end();
        const end = await pair.ended(15000);
        assert.equal(end.reason, 'error');
        assert.equal(end.error.code, 'EPIPE', end.error.message);
        assert.equal(end.error.alertSent, 'internal_error');
        const got = Buffer.concat(out);
        assert.equal(got.length, limit);
        assert.equal(sha256(got), sha256(prngBytes(seedA, limit)), 'the reader got an exact prefix');
        // The splice wrote at least what head read (the rest died in the pipe buffer with head).
        assert.ok(end.stats.bytesIn >= limit, `bytesIn ${end.stats.bytesIn}`);
        assert.ok(end.stats.bytesIn + end.undeliveredIn <= a.sent);
        await withTimeout(exited, 5000, 'head\'s pipe closing');
        await pair.hostile.waitForClose();
        assert.equal(pair.hostile.openError, null);
      } finally {
        head.stdin.destroy();
        head.kill('SIGKILL');
        await pair?.close();
      }
      await assertFdsBack(baseline.fds, 'after EPIPE');
    });
  }

  test('TLSv1.3: the sink socket is reset by its reader -> ECONNRESET or EPIPE, prefix delivered', { timeout: 30000 }, async () => {
    const pair = await openPair({ version: 'TLSv1.3' });
    const seedA = 'sink-rst-A';
    try {
      const { hostile, sink } = pair;
      const a = pump((buf) => hostile.sendData(buf), seedA);
      await sink.waitFor(256 * 1024, 10000);
      // Pause reading so that the reset happens with the splice still writing.
      sink.far.pause();
      await sleep(20);
      const got = sink.bytes();
      sink.far.resetAndDestroy();
      const end = await pair.ended(10000);
      a.stop();
      assert.equal(end.reason, 'error');
      assert.ok(['ECONNRESET', 'EPIPE'].includes(end.error.code), end.error.code);
      assert.ok(isPrefix(got, seedA));
      assert.ok(got.length <= end.stats.bytesIn);
      assert.ok(end.stats.bytesIn + end.undeliveredIn <= a.sent);
    } finally {
      await pair.close();
    }
    await assertFdsBack(baseline.fds, 'after the sink reset');
  });
});

// --- the user closes their fd ----------------------------------------------------------------

describe('fault: the user closes their fd mid-splice (the splice keeps going on its duplicate)', () => {
  test('net.Socket target destroyed by the user: both directions complete byte-exact, then a normal end',
    { timeout: 30000 }, async () => {
      const pair = await openPair({ version: 'TLSv1.3' });
      try {
        const { hostile, sink } = pair;
        const total = 2 * 1024 * 1024;
        const a = pump((buf) => hostile.sendData(buf), 'userclose-A', { total });
        const b = pump((buf) => sink.write(buf), 'userclose-B', { total });
        await sink.waitFor(200_000);
        sink.near.destroy();   // the user's fd is closed; the native duplicate is not
        await Promise.all([a.done, b.done]);
        await sink.waitFor(total, 15000);
        await hostile.waitForAppData(total, 15000);
        assert.equal(sink.hash(), sha256(prngBytes('userclose-A', total)));
        assert.equal(hostile.appHash(), sha256(prngBytes('userclose-B', total)));
        const end = await closeCleanly(pair);
        assert.equal(end.reason, 'end', end.error?.message);
        assert.equal(end.stats.bytesIn, total);
        assert.equal(end.stats.bytesOut, total);
        await sink.waitForEnd();
      } finally {
        await pair.close();
      }
      await assertFdsBack(baseline.fds, 'after the user closed the socket');
    });

  test('a raw pipe fd closed with fs.closeSync: data keeps flowing to the reader, EOF at the end',
    { timeout: 30000 }, async () => {
      const cat = spawn('cat', [], { stdio: ['pipe', 'pipe', 'ignore'] });
      const out = [];
      cat.stdout.on('data', (c) => out.push(c));
      const exited = new Promise((resolve) => cat.once('close', resolve));
      // The user's own fd for the pipe's write end; Node's copy is closed at once.
      const fd = binding.dupFd(cat.stdin._handle.fd);
      cat.stdin.destroy();
      let pair;
      let closed = false;
      try {
        pair = await openPair({ version: 'TLSv1.2', target: { writeFd: fd }, spliceOptions: { direction: 'in' } });
        const total = 1024 * 1024;
        const a = pump((buf) => pair.hostile.sendData(buf), 'rawfd-A', { total });
        await withTimeout((async () => {
          while (out.reduce((n, c) => n + c.length, 0) < 100_000) await sleep(5);
        })(), 10000, 'the first bytes through cat');
        fs.closeSync(fd);
        closed = true;
        await a.done;
        await pair.hostile.send(pair.hostile.alert(ALERT_LEVEL.warning, ALERT.close_notify));
        const end = await pair.ended(10000);
        assert.equal(end.reason, 'end', end.error?.message);
        assert.equal(end.closeNotifyReceived, true);
        // The native side closed its write end when the peer closed: cat sees EOF and exits.
        await withTimeout(exited, 5000, 'cat exiting on EOF');
        const got = Buffer.concat(out);
        assert.equal(got.length, total);
        assert.equal(sha256(got), sha256(prngBytes('rawfd-A', total)));
        assert.equal(end.stats.bytesIn, total);
      } finally {
        if (!closed) fs.closeSync(fd);
        cat.kill('SIGKILL');
        await pair?.close();
      }
      await assertFdsBack(baseline.fds, 'after the user closed the raw fd');
    });
});

// --- stop() -------------------------------------------------------------------------------------

describe('fault: stop()', () => {
  // The peer's close_notify + FIN and the sink's EOF race a stop() issued at different moments.
  const RACES = ['same tick', 'next immediate', 'after 1 ms', 'before the data'];
  const cases = [];
  for (let i = 0; i < 24; i++) {
    cases.push({ version: VERSIONS[i % 2], graceful: i % 4 < 2, race: RACES[i % RACES.length], i });
  }
  test(`stop() racing the end, ${cases.length} times: one close, every byte delivered or reported`,
    { timeout: 60000 }, async () => {
      const reasons = {};
      for (const c of cases) {
        const pair = await openPair({ version: c.version });
        try {
          const { hostile, sink, handle } = pair;
          let closes = 0;
          handle.on('close', () => closes++);
          const seed = `race-${c.i}`;
          const data = prngBytes(seed, 40_000 + c.i * 1000);
          const bytes = Buffer.concat([hostile.data(data), hostile.alert(ALERT_LEVEL.warning, ALERT.close_notify)]);
          const stop = () => handle.stop({ graceful: c.graceful });
          if (c.race === 'before the data') stop();
          hostile.socket.write(bytes);
          hostile.end();
          sink.end();
          if (c.race === 'same tick') stop();
          else if (c.race === 'next immediate') setImmediate(stop);
          else if (c.race === 'after 1 ms') setTimeout(stop, 1);
          const end = await pair.ended();
          const again = await handle.stop();
          assert.equal(again, end, 'stop() after the end resolves with the same end');
          await sleep(10);
          assert.equal(closes, 1, "exactly one 'close'");
          reasons[end.reason] = (reasons[end.reason] ?? 0) + 1;
          const allowed = ['end', c.graceful ? 'stopped' : 'aborted'];
          assert.ok(allowed.includes(end.reason), `${c.race}: reason ${end.reason}, error ${end.error?.code}`);
          assert.equal(end.error, undefined);
          // Delivered: an exact prefix, as much as stats say. Accounted: delivered + undelivered
          // is all of it when the close_notify was read, and never more than was sent.
          await sink.waitFor(end.stats.bytesIn);
          await sleep(10);
          assert.equal(sink.length, end.stats.bytesIn);
          assert.equal(sink.hash(), sha256(data.subarray(0, sink.length)));
          assert.ok(end.stats.bytesIn + end.undeliveredIn <= data.length);
          if (end.reason === 'end' || end.closeNotifyReceived) {
            assert.equal(end.stats.bytesIn + end.undeliveredIn, data.length);
          }
          if (end.reason === 'end') assert.equal(end.stats.bytesIn, data.length);
          if (c.graceful) assert.equal(end.undeliveredIn, 0, 'a graceful stop delivers what it read');
        } finally {
          await pair.close();
        }
      }
      console.log(`# stop() races: ${JSON.stringify(reasons)}`);
      await assertFdsBack(baseline.fds, 'after the stop() races');
    });

  test('stop() twice, and graceful then abort: one close, the same end for every caller',
    { timeout: 30000 }, async () => {
      for (const second of [{ graceful: true }, { graceful: false }]) {
        const pair = await openPair({ version: 'TLSv1.3' });
        try {
          const { hostile, sink, handle } = pair;
          let closes = 0;
          handle.on('close', () => closes++);
          const b = prngBytes('twice-B', 100_000);
          await sink.write(b);
          await hostile.waitForAppData(b.length);
          const p1 = handle.stop();
          const p2 = handle.stop(second);
          assert.equal(p1, p2, 'the same promise');
          const [e1, e2] = await Promise.all([p1, p2]);
          assert.equal(e1, e2);
          assert.equal(await handle.stop(), e1);
          await sleep(10);
          assert.equal(closes, 1);
          assert.ok(['stopped', 'aborted'].includes(e1.reason), e1.reason);
          assert.equal(e1.error, undefined);
          assert.equal(e1.stats.bytesOut, b.length);
          assert.equal(hostile.appHash(), sha256(b));
          if (e1.reason === 'stopped') {
            assert.equal(e1.closeNotifySent, true);
            await hostile.waitFor((p) => p.alerts.length > 0, 'the close_notify of the graceful stop');
            assert.deepEqual(hostile.alerts, [{ level: ALERT_LEVEL.warning, description: ALERT.close_notify, length: 2 }]);
          }
        } finally {
          await pair.close();
        }
      }
      await assertFdsBack(baseline.fds, 'after stop() twice');
    });
});

// --- dropped handles ----------------------------------------------------------------------------

describe('fault: a handle dropped without stop()', () => {
  test('collected by GC once its peers close; the splice ran to the end meanwhile; fds back', { timeout: 30000 }, async () => {
    const pair = await openPair({ version: 'TLSv1.3' });
    let collected = false;
    const registry = new FinalizationRegistry(() => {
      collected = true;
    });
    try {
      const { hostile, sink } = pair;
      registry.register(pair.handle, 'handle');
      const weak = new WeakRef(pair.handle);
      pair.handle = null;   // nobody holds the handle now (close() skips stop())
      const total = 1024 * 1024;
      const a = pump((buf) => hostile.sendData(buf), 'gc-A', { total });
      const b = pump((buf) => sink.write(buf), 'gc-B', { total });
      // Collections while it runs must not stop it: the native side keeps itself alive.
      for (let i = 0; i < 5; i++) {
        await gc();
        await sleep(10);
      }
      await Promise.all([a.done, b.done]);
      await sink.waitFor(total, 15000);
      await hostile.waitForAppData(total, 15000);
      assert.equal(sink.hash(), sha256(prngBytes('gc-A', total)));
      assert.equal(hostile.appHash(), sha256(prngBytes('gc-B', total)));
      await hostile.send(hostile.alert(ALERT_LEVEL.warning, ALERT.close_notify));
      sink.end();
      await sink.waitForEnd();
      await hostile.waitForClose();
      assert.deepEqual(hostile.alerts, [{ level: ALERT_LEVEL.warning, description: ALERT.close_notify, length: 2 }]);
      const deadline = Date.now() + 5000;
      while ((weak.deref() !== undefined || !collected) && Date.now() < deadline) {
        await gc();
        await sleep(20);
      }
      assert.equal(weak.deref(), undefined, 'the handle was collected');
      assert.equal(collected, true, 'its finalizer ran');
    } finally {
      await pair.close();
    }
    await assertFdsBack(baseline.fds, 'after the dropped handle');
  });
});

// --- process exit ------------------------------------------------------------------------------

describe('fault: a process ends with 100 live splices', () => {
  for (const how of ['exit', 'throw']) {
    test(`process.${how === 'exit' ? 'exit(0)' : 'uncaught exception'}: no crash, no hang`, { timeout: 60000 }, async () => {
      const child = spawn(process.execPath, [CHILD, 'live-splices', '100', how],
        { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c) => { stdout += c; });
      child.stderr.on('data', (c) => { stderr += c; });
      try {
        const [code, signal] = await withTimeout(new Promise((resolve) => child.once('exit', (...a) => resolve(a))),
          45000, 'the child exiting');
        assert.match(stdout, /^LIVE 100$/m, `stdout: ${stdout}\nstderr: ${stderr}`);
        assert.equal(signal, null, `killed by ${signal}\n${stderr}`);
        if (how === 'exit') {
          assert.equal(code, 0, stderr);
          assert.equal(stderr, '');
        } else {
          assert.equal(code, 1, stderr);
          assert.match(stderr, /boom: uncaught with live splices/);
        }
        assert.doesNotMatch(stderr, /AddressSanitizer|Segmentation|Abort|FATAL ERROR|terminate called/);
      } finally {
        child.kill('SIGKILL');
      }
    });
  }
});

// --- 1,000 splices stopped at random moments ---------------------------------------------------

describe('fault: 1,000 concurrent splices stopped at random moments', () => {
  const COUNT = 1000;
  let peers = null;

  after(() => peers?.kill('SIGKILL'));

  // One round: COUNT tls-splice clients to the peers' TLS server, each spliced to a sink
  // connection to the peers' far-end server, all open at once; then each is stopped (gracefully
  // or not, at random) at a random moment within a second while both directions stream.
  async function round(r, { tlsPort, farPort }, reports) {
    const rng = new PrngStream(`thousand-stops-${r}`);
    const random = () => rng.next(4).readUInt32BE(0) / 2 ** 32;
    const splices = [];
    let live = 0;
    let peak = 0;
    const open = async (i) => {
      const raw = net.connect(tlsPort, '127.0.0.1');
      raw.on('error', () => {});
      await withTimeout(new Promise((resolve, reject) => {
        raw.once('connect', resolve);
        raw.once('error', reject);
      }), 20000, 'TCP connect');
      const sock = connect({ socket: raw, servername: 'localhost', ca: CA });
      sock.on('error', () => {});
      await withTimeout(new Promise((resolve, reject) => {
        sock.once('secureConnect', resolve);
        sock.once('error', reject);
      }), 20000, 'TLS handshake');
      // Both connections say who they are before the splice (capture and takeOverSocket wait for
      // these writes to leave); the peers seed their streams with it.
      const id = Buffer.alloc(4);
      id.writeUInt32BE(i);
      sock.write(id);
      const near = net.connect({ port: farPort, host: '127.0.0.1', allowHalfOpen: true });
      near.on('error', () => {});
      await withTimeout(new Promise((resolve) => near.once('connect', resolve)), 20000, 'sink connect');
      near.write(id);
      const handle = spliceTo(sock, near, { engine: 'native' });
      const s = { i, handle, near, raw, graceful: random() < 0.5 };
      handle.once('close', () => {
        live--;
        s.closed = true;
      });
      splices.push(s);
      const started = handle.start();
      // One in twenty is stopped while start() is still capturing the session.
      if (random() < 0.05) {
        s.stoppedDuringStart = true;
        s.stopped = handle.stop({ graceful: s.graceful });
      }
      await started;
      live++;
      peak = Math.max(peak, live);
    };
    const t0 = Date.now();
    const phase = {};
    // Open them all, 50 handshakes at a time; the peers stream only once all are open.
    for (let i = 0; i < COUNT; i += 50) {
      await Promise.all(Array.from({ length: Math.min(50, COUNT - i) }, (_, k) => open(r * COUNT + i + k)));
    }
    phase.open = Date.now() - t0;
    assert.ok(peak >= COUNT * 0.9, `peak concurrent splices ${peak}`);
    peers.send({ type: 'go' });
    // Each splice not already stopped during start() is stopped at a random moment within a
    // second of having moved bytes both ways: the stops fall while both directions stream,
    // whatever the machine's load (a fixed delay after 'go' once found only 237 of 1,000 moving).
    const flowDeadline = Date.now() + 30000;
    const moving = async (s) => {
      for (;;) {
        const { bytesIn, bytesOut } = s.handle.stats();
        if ((bytesIn > 0 && bytesOut > 0) || s.closed) return;
        assert.ok(Date.now() < flowDeadline, `splice ${s.i}: no bytes both ways within 30 s`);
        await sleep(20);
      }
    };
    await Promise.all(splices.map(async (s) => {
      if (s.stopped !== undefined) return;
      await moving(s);
      await sleep(Math.floor(random() * 1000));
      s.stopped ??= s.handle.stop({ graceful: s.graceful });
    }));
    const ends = await withTimeout(Promise.all(splices.map((s) => s.handle.closed)), 30000, 'every splice closing');
    phase.stopped = Date.now() - t0;
    peers.send({ type: 'pause' });
    // Let the sinks finish: resume the user's socket (it reads and drops what the far end still
    // sends, so no RST cuts what the splice wrote), then FIN; the far end then reports.
    for (const s of splices) {
      s.near.resume();
      s.near.end();
    }
    const key = (kind, s) => `${kind}:${s.i}`;
    const deadline = Date.now() + 30000;
    const reported = () => splices.every((s) => reports.has(key('tls', s)) && reports.has(key('far', s)));
    while (!reported() && Date.now() < deadline) await sleep(50);
    const missing = splices.filter((s) => !reports.has(key('tls', s)) || !reports.has(key('far', s)));
    assert.equal(missing.length, 0, `no peer report for splices ${missing.slice(0, 10).map((s) => s.i)}`);
    phase.reported = Date.now() - t0;

    const reasons = {};
    for (const [k, s] of splices.entries()) {
      const end = ends[k];
      const what = `splice ${s.i} (${end.reason}${end.error ? ` ${end.error.code}` : ''})`;
      reasons[end.reason] = (reasons[end.reason] ?? 0) + 1;
      assert.ok(['stopped', 'aborted'].includes(end.reason), what);
      assert.equal(end.error, undefined, what);
      const tlsPeer = reports.get(key('tls', s));
      const far = reports.get(key('far', s));
      // peer -> sink: the far end got exactly what the splice wrote, a prefix of the peer's
      // stream; the splice took no more than the peer sent.
      assert.equal(far.received, end.stats.bytesIn, `${what}: far end received == bytesIn`);
      assert.equal(far.sha256, sha256(prngBytes(`in-${s.i}`, far.received)), `${what}: far end bytes`);
      assert.ok(end.stats.bytesIn + end.undeliveredIn <= tlsPeer.sent, `${what}: in <= sent`);
      if (s.graceful && end.reason === 'stopped') assert.equal(end.undeliveredIn, 0, `${what}: undeliveredIn`);
      // sink -> peer: the peer got a prefix of the far end's stream, no more than the splice read,
      // and, unless the connection was reset, all it wrote out in whole records (bytesOut); all
      // of it exactly when our close_notify came after it.
      assert.equal(tlsPeer.sha256, sha256(prngBytes(`out-${s.i}`, tlsPeer.received)), `${what}: peer bytes`);
      assert.ok(tlsPeer.received <= end.stats.bytesOut + end.undeliveredOut, `${what}: peer received too much`);
      if (tlsPeer.error === null) assert.ok(tlsPeer.received >= end.stats.bytesOut, `${what}: peer lost bytes`);
      if (end.closeNotifySent && tlsPeer.error === null) {
        assert.equal(tlsPeer.received, end.stats.bytesOut, `${what}: close_notify after everything`);
      }
      assert.ok(end.stats.bytesOut + end.undeliveredOut <= far.sent, `${what}: out <= sent`);
    }
    for (const s of splices) {
      s.near.destroy();
      s.raw.destroy();
    }
    const moved = ends.reduce((n, e) => n + e.stats.bytesIn + e.stats.bytesOut, 0);
    // Not vacuous: every splice stopped after start() had moved bytes both ways.
    const busy = ends.filter((e) => e.stats.bytesIn > 0 && e.stats.bytesOut > 0).length;
    const stoppedEarly = splices.filter((s) => s.stoppedDuringStart).length;
    assert.ok(busy >= COUNT - stoppedEarly,
      `only ${busy} splices had moved bytes both ways when stopped (${stoppedEarly} stopped during start())`);
    const resets = splices.filter((s) => reports.get(key('tls', s)).error !== null).length;
    console.log(`# round ${r}: ${COUNT} splices, peak ${peak} concurrent, ends ${JSON.stringify(reasons)}, ` +
      `${busy} moving both ways, ${resets} peers saw a reset, ${(moved / 1048576).toFixed(1)} MiB moved, ` +
      `ms: ${JSON.stringify(phase)}`);
  }

  test(`${COUNT} splices to loopback Node peers in a child, three times: every byte accounted for, fds back, RSS flat`,
    { timeout: 200000 }, async () => {
      peers = spawn(process.execPath, [CHILD, 'peers'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const reports = new Map();   // `${kind}:${id}` -> report
      let listening;
      const ready = new Promise((resolve) => { listening = resolve; });
      peers.on('message', (m) => {
        if (m.type === 'listening') listening(m);
        else if (m.type === 'report') reports.set(`${m.kind}:${m.id}`, m);
      });
      const ports = await withTimeout(ready, 10000, 'the peers listening');
      const start = await snapshot();   // with the IPC channel open

      // The allocator (glibc arenas, V8's heap) keeps what a round used, about 300 KiB per
      // splice, but how much a round reaches depends on how much the splices had moved when
      // stopped, which varies with the machine's load (44 to 199 MiB a round seen): one round did
      // not always reach the high-water mark (+5.9, +13.4 and +48.6 MiB on a second round). Two
      // rounds mostly set it; a third must mostly reuse it. A leak grows every round.
      await round(0, ports, reports);
      await round(1, ports, reports);
      await assertFdsBack(start.fds, `after ${2 * COUNT} splices`, { timeout: 15000 });
      const warm = await memorySnapshot();
      await round(2, ports, reports);
      await assertFdsBack(start.fds, `after ${3 * COUNT} splices`, { timeout: 15000 });
      console.log(`# RSS: +${((warm.rss - start.rss) / 1048576).toFixed(1)} MiB after rounds 0-1 ` +
        '(allocator high-water mark)');
      // A splice that leaked its native state would add about 300 KiB a splice, 290 MiB a round;
      // a leak of a third of it still shows. Two rounds do not always set the allocator's
      // high-water mark: it reached 133 MiB in one run and 235 MiB in the next (Node 24), and the
      // third round of the first run then added 57 MiB without any leak.
      await assertMemoryBounded(warm, { native: 96 * 1024 * 1024, js: 16 * 1024 * 1024 },
        'the third round over the first two');

      peers.send({ type: 'exit' });
      await withTimeout(new Promise((resolve) => peers.once('exit', resolve)), 10000, 'the peers exiting');
      peers = null;
    });
});
