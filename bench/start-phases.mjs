// Where start() time goes (issue 11), call to resolve, per phase, on a quiet socket and with
// other handshakes in flight. One measured connection at a time:
//
//   node bench/start-phases.mjs [--count 200] [--inflight 0,16,64] [--base]
//
// The server (tls-splice createServer) runs in this process; the measured clients, the backend
// and the background load (`--inflight N`: N handshakes kept in flight all the time, each a fresh
// TLS connection that closes once established) run in a child process. For each measured
// connection the server reads the request, has a backend socket connected already, and calls
// spliceTo(socket, backend, { engine: 'native' }).start(). Phases, in ms (p50 / p90):
//   start      call to resolve
//   capture    captureSession(), call to resolve; of which
//     sync     its synchronous part (the checks before the first await)
//     open     time in native trial decryption (boundary, probes, proofs: openRecord, or
//              RecordOpener construction and open()), with the records opened and the key
//              derivations per start
//   native     new Splice(...) + splice.start()
//   rest       start - capture - native: the target checks and the promise hops around them
// The instrumentation wraps exported functions of the CommonJS build (dist/) by name; nothing
// inside the library changes. `--base` loads $TLS_SPLICE_BASE_PKG instead (A/B).
import { fork } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(HERE);
const FIXTURES = path.join(ROOT, 'test', 'fixtures');
const read = (name) => fs.readFileSync(path.join(FIXTURES, name));
const REQUEST = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
const RESPONSE = Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');

function args() {
  const out = { count: 200, inflight: [0, 16, 64], base: false, role: 'driver' };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--count') out.count = Number(argv[++i]);
    else if (a === '--inflight') out.inflight = argv[++i].split(',').map(Number);
    else if (a === '--base') out.base = true;
    else if (a === '--role') out.role = argv[++i];
    else throw new Error(`start-phases: unknown argument ${a}`);
  }
  return out;
}

const now = () => Number(process.hrtime.bigint()) / 1e6;

function pct(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

// ---- child: backend, measured clients, background handshakes ------------------------------------

async function child() {
  const backend = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.once('data', () => socket.end(RESPONSE));
  });
  await new Promise((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const ca = read('ca.pem');
  let port = 0;
  let load = 0;
  const background = () => {
    if (load <= 0) return;
    const socket = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca });
    socket.on('error', () => {});
    socket.once('secureConnect', () => socket.destroy());
    socket.once('close', () => { load--; if (running) { load++; background(); } });
  };
  let running = false;
  const one = () => new Promise((resolve, reject) => {
    const socket = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca });
    let got = 0;
    socket.on('data', (chunk) => { got += chunk.length; });
    socket.once('secureConnect', () => socket.write(REQUEST));
    socket.once('end', () => socket.end());
    socket.once('close', () => (got === RESPONSE.length ? resolve() :
      reject(new Error(`start-phases: a client got ${got} bytes`))));
    socket.once('error', reject);
  });
  process.send({ type: 'backend', port: backend.address().port });
  process.on('message', async (msg) => {
    if (msg.type !== 'run') return;
    port = msg.port;
    running = true;
    load = msg.inflight;
    for (let i = 0; i < msg.inflight; i++) background();
    // Let the load reach its level.
    await new Promise((resolve) => setTimeout(resolve, msg.inflight > 0 ? 500 : 0));
    let error = null;
    for (let i = 0; i < msg.count && error === null; i++) await one().catch((err) => { error = err; });
    running = false;
    process.send({ type: 'done', error: error?.message ?? null });
  });
}

// ---- server (this process) --------------------------------------------------------------------------

async function driver(opts) {
  const pkg = opts.base ? process.env.TLS_SPLICE_BASE_PKG : ROOT;
  if (!pkg) throw new Error('start-phases: set TLS_SPLICE_BASE_PKG with --base');
  const require = createRequire(path.join(pkg, 'dist', 'index.js'));
  const lib = require(path.join(pkg, 'dist', 'index.js'));
  const capture = require(path.join(pkg, 'dist', 'capture.js'));
  const { binding } = require(path.join(pkg, 'dist', 'binding.js'));

  // Instrumentation, per measured start (the one in progress at a time).
  let current = null;
  const originalCapture = capture.captureSession;
  capture.captureSession = (...a) => {
    const t0 = now();
    const promise = originalCapture(...a);
    if (current) current.sync = now() - t0;
    return promise.finally(() => { if (current) current.capture = now() - t0; });
  };
  const originalOpen = binding.openRecord;
  binding.openRecord = (params) => {
    const t0 = now();
    try {
      return originalOpen(params);
    } finally {
      if (current) { current.open += now() - t0; current.opens++; current.derives++; }
    }
  };
  // This build: keys derived once per RecordOpener, then open() per record.
  const OriginalOpener = binding.RecordOpener;
  if (typeof OriginalOpener === 'function') {
    binding.RecordOpener = class extends OriginalOpener {
      constructor(...a) {
        const t0 = now();
        super(...a);
        if (current) { current.open += now() - t0; current.derives++; }
      }
      open(...a) {
        const t0 = now();
        try {
          return super.open(...a);
        } finally {
          if (current) { current.open += now() - t0; current.opens++; }
        }
      }
    };
  }
  const OriginalSplice = binding.Splice;
  binding.Splice = class extends OriginalSplice {
    constructor(...a) {
      const t0 = now();
      super(...a);
      if (current) current.constructStart = t0;
    }
    start() {
      const r = super.start();
      if (current) current.native = now() - current.constructStart;
      return r;
    }
  };

  const kid = fork(fileURLToPath(import.meta.url), ['--role', 'child'], { stdio: 'inherit' });
  const { port: backendPort } = await new Promise((resolve) => kid.once('message', resolve));
  const options = { key: read('server-key.pem'), cert: read('server.pem') };
  let samples = [];
  const srv = lib.createServer(options, (socket) => {
    socket.on('error', () => {});
    // A measured client sends a request at once; a background one closes after its handshake
    // (its 'readable' is the end of the stream, with nothing to read).
    socket.once('readable', () => {
      if (socket.readableLength === 0) return;
      // The backend is connected first, so that start() measures only the splice.
      const backend = net.connect(backendPort, '127.0.0.1');
      backend.on('error', () => {});
      backend.setNoDelay(true);
      backend.once('connect', () => {
        const sample = { sync: 0, capture: 0, open: 0, opens: 0, derives: 0, native: 0, start: 0 };
        current = sample;
        const t0 = now();
        lib.spliceTo(socket, backend, { engine: 'native', autoClose: true }).start().then(() => {
          sample.start = now() - t0;
          if (globalThis.__ph) { let prev = t0; sample.ph = globalThis.__ph.map(([n, t]) => { const d = [n, t - prev]; prev = t; return d; }); sample.ph.push(['end', now() - prev]); globalThis.__ph = []; }
          current = null;
          samples.push(sample);
        }, (err) => { current = null; console.error(err); socket.destroy(); });
      });
    });
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const rows = [];
  for (const inflight of opts.inflight) {
    samples = [];
    kid.send({ type: 'run', port: srv.address().port, count: opts.count, inflight });
    const done = await new Promise((resolve) => kid.once('message', resolve));
    if (done.error) throw new Error(done.error);
    const f = (key) => `${pct(samples.map((s) => s[key]), 0.5).toFixed(3)} / ${pct(samples.map((s) => s[key]), 0.9).toFixed(3)}`;
    const rest = samples.map((s) => ({ rest: s.start - s.capture - s.native }));
    rows.push(`| ${inflight} | ${samples.length} | ${f('start')} | ${f('capture')} | ${f('sync')} | ` +
      `${f('open')} (${pct(samples.map((s) => s.opens), 0.5)} / ${pct(samples.map((s) => s.derives), 0.5)}) | ${f('native')} | ` +
      `${pct(rest.map((r) => r.rest), 0.5).toFixed(3)} |`);
  }
  if (samples[0]?.ph) { const names = samples[0].ph.map(([n]) => n); console.log(names.map((n, i) => `${n} ${pct(samples.map((s) => s.ph[i]?.[1] ?? NaN), 0.5).toFixed(3)}`).join(', ')); }
  kid.kill();
  srv.close();
  console.log(`${opts.base ? 'base' : 'this'} build; load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  console.log('| in flight | n | start p50 / p90 ms | capture | capture sync | trial decryption (opens / key derivations) | native | rest p50 |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const row of rows) console.log(row);
  process.exit(0);
}

const opts = args();
if (opts.role === 'child') await child();
else await driver(opts);
