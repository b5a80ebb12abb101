// A TLS terminator in front of a plain HTTP backend: the Node process under test of the
// `connections` scenario (bench/lib/connections.mjs starts it with a JSON spec as argv[2]).
//
//   tool 'native'   tls-splice: createServer() + spliceTo(tlsSocket, backendSocket,
//                   { engine: 'native', autoClose: true, noDelay: true }) once the backend connected
//   tool 'js-pump'  plain Node: tls.createServer() + net.connect() + pipe() both ways
//
// Both set TCP_NODELAY on both sockets (Nagle stalls a request/response protocol for 40 ms against
// delayed ACKs). Prints "listening" once it listens. On a "report" line on stdin it prints one
// JSON line: connections accepted, errors, splices running, and the start() latencies (call to
// resolve, tls-splice only) since the last report; the runner reads CPU, RSS and fds from /proc.
import net from 'node:net';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import readline from 'node:readline';
import tls from 'node:tls';

// See case.mjs: the first ELU call of a process, made here before any I/O.
performance.eventLoopUtilization();

const { createServer, spliceTo } = await import(
  process.env.TLS_SPLICE_BENCH_PKG ? `${process.env.TLS_SPLICE_BENCH_PKG}/esm/index.mjs` : '../esm/index.mjs');

const spec = JSON.parse(process.argv[2]);
const key = fs.readFileSync(spec.keyPath);
const cert = fs.readFileSync(spec.certPath);

let accepted = 0;
let errors = 0;
let running = 0;
const errorCodes = new Map();
let startNs = [];

function countError(err) {
  errors++;
  const code = err?.code ?? 'unknown';
  errorCodes.set(code, (errorCodes.get(code) ?? 0) + 1);
}

function connectBackend() {
  const backend = net.connect({ host: '127.0.0.1', port: spec.backendPort, noDelay: true });
  backend.setNoDelay(true);
  return backend;
}

function spliced(tlsSocket) {
  accepted++;
  tlsSocket.setNoDelay(true);
  tlsSocket.on('error', countError);
  const backend = connectBackend();
  backend.on('error', (err) => {
    countError(err);
    tlsSocket.destroy();
  });
  backend.once('connect', async () => {
    let handle;
    try {
      handle = spliceTo(tlsSocket, backend, { engine: 'native', autoClose: true, noDelay: true });
    } catch (err) {
      countError(err);
      tlsSocket.destroy();
      backend.destroy();
      return;
    }
    const t0 = process.hrtime.bigint();
    try {
      await handle.start();
    } catch (err) {
      countError(err);
      tlsSocket.destroy();
      backend.destroy();
      return;
    }
    startNs.push(Number(process.hrtime.bigint() - t0));
    running++;
    const end = await handle.closed;
    running--;
    if (end.error) countError(end.error);
  });
}

function piped(tlsSocket) {
  accepted++;
  tlsSocket.setNoDelay(true);
  const backend = connectBackend();
  const fail = (err) => {
    countError(err);
    tlsSocket.destroy();
    backend.destroy();
  };
  tlsSocket.on('error', fail);
  backend.on('error', fail);
  running++;
  backend.once('close', () => { running--; });
  tlsSocket.pipe(backend);
  backend.pipe(tlsSocket);
}

let server;
if (spec.tool === 'native') server = createServer({ key, cert }, spliced);
else if (spec.tool === 'js-pump') server = tls.createServer({ key, cert }, piped);
else throw new Error(`terminator: no tool ${spec.tool}`);
server.on('tlsClientError', countError);
server.maxConnections = 20000;
server.listen({ port: spec.port, host: '127.0.0.1', backlog: 4096 }, () => {
  process.stdout.write('listening\n');
});

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() !== 'report') return;
  const sorted = startNs.sort((a, b) => a - b);
  startNs = [];
  const ms = (ns) => (ns === null ? null : ns / 1e6);
  process.stdout.write(`${JSON.stringify({
    report: true,
    accepted,
    errors,
    errorCodes: Object.fromEntries(errorCodes),
    running,
    starts: sorted.length,
    startMs: sorted.length ? {
      p50: ms(percentile(sorted, 50)),
      p90: ms(percentile(sorted, 90)),
      p99: ms(percentile(sorted, 99)),
      mean: ms(sorted.reduce((a, b) => a + b, 0) / sorted.length),
    } : null,
  })}\n`);
});
process.stdin.on('end', () => process.exit(0));
