// Child processes for the fault tests (test/faults.test.mjs). Run as
//   node fault-child.mjs live-splices <count> <exit|throw>
//       Sets up <count> natively spliced TLS sessions in this process (tls-splice server, plain
//       node:tls clients streaming both ways, each spliced to a loopback TCP sink), waits until
//       every one has moved bytes both ways, prints "LIVE <count>" on stdout, then ends the
//       process with the splices still running: process.exit(0), or an uncaught exception.
//   node fault-child.mjs peers            (with an IPC channel)
//       Loopback peers for many splices in another process: a plain node:tls server and a plain
//       TCP "far end" server on 127.0.0.1. On each connection the client first sends a 4-byte id
//       (before any splice); the peer then streams a seeded PRNG stream (TLS: `in-<id>`, far end:
//       `out-<id>`) in small throttled chunks, hashes what it receives after the id, and when it
//       closes reports over IPC:
//         { type: 'report', kind: 'tls' | 'far', id, sent, received, sha256, error }
//       First message: { type: 'listening', tlsPort, farPort }. The streams start on { type: 'go' },
//       pause on { type: 'pause' }; { type: 'exit' } ends the process.
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

import { PrngStream } from './data.mjs';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const read = (name) => fs.readFileSync(path.join(fixtures, name));

// One interval drives every stream: each gets one chunk per tick while its socket has room.
class Streams {
  #set = new Set();
  paused = false;

  constructor({ chunk, everyMs, cap }) {
    this.chunk = chunk;
    this.cap = cap;
    this.timer = setInterval(() => this.#tick(), everyMs);
  }

  add(socket, seed) {
    const s = { socket, prng: new PrngStream(seed), sent: 0 };
    this.#set.add(s);
    const drop = () => this.#set.delete(s);
    socket.once('close', drop);
    socket.once('end', drop);
    socket.once('error', drop);
    this.#tick1(s);
    return s;
  }

  #tick1(s) {
    const { socket } = s;
    if (this.paused || socket.destroyed || !socket.writable || socket.writableLength > 4 * this.chunk) return;
    if (s.sent >= this.cap) return;
    const n = Math.min(this.chunk, this.cap - s.sent);
    socket.write(s.prng.next(n));
    s.sent += n;
  }

  #tick() {
    for (const s of this.#set) this.#tick1(s);
  }

  stop() {
    clearInterval(this.timer);
  }
}

function hashing(socket) {
  const r = { received: 0, hash: crypto.createHash('sha256') };
  socket.on('data', (chunk) => {
    r.received += chunk.length;
    r.hash.update(chunk);
  });
  return r;
}

// Calls onId(id) with the connection's first 4 bytes, then hashes the rest (r.received excludes
// the id).
function identified(socket, onId) {
  const r = { received: 0, hash: crypto.createHash('sha256'), id: null };
  let head = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    if (r.id === null) {
      head = Buffer.concat([head, chunk]);
      if (head.length < 4) return;
      r.id = head.readUInt32BE(0);
      chunk = head.subarray(4);
      onId(r.id);
    }
    r.received += chunk.length;
    r.hash.update(chunk);
  });
  return r;
}

async function peers() {
  // Quiet until the parent has opened every connection ({ type: 'go' }), then as fast as the
  // CPUs allow, up to 1 MiB per stream.
  const streams = new Streams({ chunk: 16384, everyMs: 10, cap: 1024 * 1024 });
  streams.paused = true;
  const serve = (kind, prefix) => (socket) => {
    let stream = null;
    let error = null;
    const r = identified(socket, (id) => {
      stream = streams.add(socket, `${prefix}-${id}`);
    });
    socket.on('error', (err) => {
      error ??= err;
    });
    socket.on('end', () => socket.end());
    socket.on('close', () => {
      process.send({ type: 'report', kind, id: r.id, sent: stream?.sent ?? 0, received: r.received,
        sha256: r.hash.digest('hex'), error: error?.code ?? error?.message ?? null });
    });
  };
  const tlsServer = tls.createServer({ key: read('server-key.pem'), cert: read('server.pem') }, serve('tls', 'in'));
  tlsServer.on('tlsClientError', () => {});
  const farServer = net.createServer({ allowHalfOpen: true }, serve('far', 'out'));
  await Promise.all([tlsServer, farServer].map((s) => new Promise((resolve) => s.listen(0, '127.0.0.1', resolve))));
  process.on('message', (m) => {
    if (m?.type === 'go') streams.paused = false;
    if (m?.type === 'pause') streams.paused = true;
    if (m?.type === 'exit') {
      streams.stop();
      tlsServer.close();
      farServer.close();
      process.disconnect();
      setImmediate(() => process.exit(0));
    }
  });
  process.send({ type: 'listening', tlsPort: tlsServer.address().port, farPort: farServer.address().port });
}

async function liveSplices(count, how) {
  const { createServer, spliceTo } = await import('../../dist/index.js');
  const streams = new Streams({ chunk: 16384, everyMs: 5, cap: Infinity });
  const farServer = net.createServer({ allowHalfOpen: true }, (far) => {
    far.on('error', () => {});
    far.resume();
    streams.add(far, `far-${far.remotePort}`);
  });
  await new Promise((resolve) => farServer.listen(0, '127.0.0.1', resolve));
  const handles = [];
  const server = createServer({ key: read('server-key.pem'), cert: read('server.pem') }, (socket) => {
    socket.on('error', () => {});
    const near = net.connect({ port: farServer.address().port, host: '127.0.0.1', allowHalfOpen: true });
    near.on('error', () => {});
    near.once('connect', () => {
      const handle = spliceTo(socket, near, { engine: 'native' });
      handles.push(handle);
      handle.start().catch((err) => {
        process.stderr.write(`start failed: ${err.code} ${err.message}\n`);
        process.exit(3);
      });
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  for (let i = 0; i < count; i++) {
    const client = tls.connect({ port: server.address().port, host: '127.0.0.1', servername: 'localhost',
      ca: read('ca.pem') });
    client.on('error', () => {});
    client.resume();
    client.once('secureConnect', () => streams.add(client, `client-${i}`));
  }
  const deadline = Date.now() + 30000;
  for (;;) {
    const live = handles.filter((h) => {
      const s = h.stats();
      return h.engine === 'native' && s.bytesIn > 0 && s.bytesOut > 0;
    }).length;
    if (live === count) break;
    if (Date.now() > deadline) {
      process.stderr.write(`only ${live} of ${count} splices became live\n`);
      process.exit(4);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  // Every splice is live and moving bytes both ways on the native I/O threads right now.
  process.stdout.write(`LIVE ${count}\n`);
  if (how === 'throw') {
    setImmediate(() => {
      throw new Error('boom: uncaught with live splices');
    });
  } else {
    process.exit(0);
  }
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'peers') {
  await peers();
} else if (mode === 'live-splices') {
  await liveSplices(Number(args[0]), args[1]);
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
